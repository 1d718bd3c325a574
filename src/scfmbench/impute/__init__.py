"""Imputation: two protocols (masking, :mod:`.protocol`; molecular cross-validation, :mod:`.mcv`), the
imputer registry (:mod:`.methods`), the oracle controls ``perfect`` and ``true_rate`` (:mod:`.controls`) and what
both protocols share (:mod:`.base`: their files, run record, output check, pooled Pearson)."""

from scfmbench.impute.controls import perfect_main, true_rate_main
from scfmbench.impute.mcv import make_mcv, score_mcv, split_molecules, write_mcv
from scfmbench.impute.methods import IMPUTERS, get_imputer, impute_main, register_imputer
from scfmbench.impute.protocol import (
    fold_adata,
    make_masks,
    read_masked,
    run_imputer,
    score_imputation,
    score_main,
    write_masks,
)

__all__ = [
    "IMPUTERS",
    "fold_adata",
    "get_imputer",
    "impute_main",
    "make_masks",
    "make_mcv",
    "perfect_main",
    "read_masked",
    "register_imputer",
    "run_imputer",
    "score_imputation",
    "score_main",
    "score_mcv",
    "split_molecules",
    "true_rate_main",
    "write_masks",
    "write_mcv",
]
