"""The pretraining stage: masking strategies, the shared loop (scHyena's results unchanged), MAM,
the scFoundation-style backbone and its loader, fine-tuning from a pretraining checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_raw
from scfmbench import InputError
from scfmbench.pretrain.masking import STRATEGIES, build_strategy, gumbel_topk

FIXTURES = Path(__file__).parent / "fixtures" / "pretrain"


# ------------------------------------------------------------------------------------------------
# scHyena through the shared loop: the numbers of the code before the refactor


@pytest.fixture(scope="module")
def schyena_data():
    from scfmbench.data.prepare import prepare_dataset

    return prepare_dataset(make_raw(), seed=0)


def test_schyena_pretraining_unchanged_by_refactor(schyena_data):
    """tests/fixtures/pretrain/schyena_before_refactor.json was written by the pre-refactor
    scfmbench.schyena.tasks (make_schyena_before_refactor.py, commit before the shared stage)."""
    from scfmbench.models.schyena import SCHyena, SCHyenaConfig
    from scfmbench.schyena.tasks import dense_values, pretrain, train_masked

    old = json.loads((FIXTURES / "schyena_before_refactor.json").read_text())
    cfg = SCHyenaConfig(n_genes=schyena_data.n_vars, d_model=16, n_layers=1, filter_order=8, mlp_ratio=2)
    model, hist = pretrain(schyena_data, config=cfg, steps=6, batch_size=16, lr=0.01, seed=3, eval_every=3)
    assert hist.train_loss == pytest.approx(old["train_loss"], rel=1e-6)
    assert hist.mask_prob == pytest.approx(old["mask_prob"], rel=1e-12)
    assert hist.valid_loss == pytest.approx(old["valid_loss"], rel=1e-6) and hist.eval_step == old["eval_step"]
    sums = {k: float(v.double().sum()) for k, v in model.state_dict().items()}
    assert sums == pytest.approx(old["param_sums"], rel=1e-5, abs=1e-6)
    # the imputer's variant (every zero shown as the mask token)
    torch.manual_seed(5)
    m = SCHyena(cfg)
    h = train_masked(m, torch.from_numpy(dense_values(schyena_data)), steps=4, batch_size=8, lr=0.01, generator=torch.Generator().manual_seed(5), mask_zeros=True)
    assert h.train_loss == pytest.approx(old["imputer_train_loss"], rel=1e-6)
    assert {k: float(v.double().sum()) for k, v in m.state_dict().items()} == pytest.approx(old["imputer_param_sums"], rel=1e-5, abs=1e-6)
