"""Imputation: the masking protocol (:mod:`.protocol`) and the imputer registry (:mod:`.methods`)."""

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
    "read_masked",
    "register_imputer",
    "run_imputer",
    "score_imputation",
    "score_main",
    "write_masks",
]
