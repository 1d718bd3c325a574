"""The ``schyena`` imputer: scHyena trained by masked expression modelling on the fold's own cells.

scHyena (arXiv 2310.02713; ``REFERENCE.md`` section 2) imputes by putting the mask token at the
held-out positions and reading the expression head there. In this benchmark's protocol
(:mod:`scfmbench.impute.protocol`) an imputer is never told which entries were hidden: a held-out
entry looks exactly like a zero. Giving the model the held-out positions would leak them (only
originally non-zero entries are ever hidden, so the positions alone say "this one is not zero").
So this imputer does the leak-free version:

- **Inference**: *every* zero entry of a cell is shown as the mask token and predicted; non-zero
  entries are given as observed. The output keeps the observed values and puts the (clipped at 0)
  predictions at the zeros. Scoring only reads the held-out entries, which are among the zeros.
- **Training** (one model per call, i.e. per fold, from scratch): masked expression modelling on
  the cells of the fold itself, whose held-out entries are already zero: self-supervised, no
  labels, no held-out value. Per batch, p ~ U(mask_low, mask_high) and a Bernoulli(p) mask of the
  non-zero entries are the targets (MSE there), as in pretraining. With ``mask_zeros=True`` (the
  default) every zero entry is shown as the mask token too, without a loss term, so that training
  inputs look like the inference inputs (where all zeros are masked) and the model learns
  E[value | masked, non-zero] -- what a held-out entry is. ``mask_zeros=False`` is scHyena's plain
  pretraining (zeros shown as 0), which then faces a shift at inference.

The expression head is trained only on non-zero targets, so it predicts a positive value at true
zeros as well; no metric of the protocol reads those.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from scfmbench import InputError
from scfmbench.impute.methods import register_imputer
from scfmbench.models.schyena import SCHyena, SCHyenaConfig
from scfmbench.schyena.params import DEFAULTS
from scfmbench.schyena.tasks import dense_values, resolve_device, seeded, train_masked

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_zeros(model: SCHyena, values: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
    """Predict every zero of ``values`` (N, G) with all zeros masked; keep the non-zeros. Returns (N, G) on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    gene_ids = torch.arange(values.shape[1], device=device)
    out = []
    for i in range(0, len(values), batch_size):
        v = values[i : i + batch_size].to(device)
        zeros = v == 0
        pred = model.predict_expression(v, gene_ids.expand(len(v), -1), zeros).float().clamp_min(0)
        out.append(torch.where(zeros, pred, v).cpu())
    return torch.cat(out) if out else values.clone()


@register_imputer("schyena")
def schyena_imputer(
    adata,
    *,
    seed: int,
    d_model: int = DEFAULTS.d_model,
    n_layers: int = DEFAULTS.n_layers,
    order: int = DEFAULTS.order,
    filter_order: int = DEFAULTS.filter_order,
    mlp_ratio: int = DEFAULTS.mlp_ratio,
    dropout: float = DEFAULTS.dropout,
    steps: int = DEFAULTS.impute_steps,
    batch_size: int = DEFAULTS.impute_batch_size,
    lr: float = DEFAULTS.impute_lr,
    mask_low: float = DEFAULTS.mask_low,
    mask_high: float = DEFAULTS.mask_high,
    mask_zeros: bool = DEFAULTS.impute_mask_zeros,
    eval_every: int | None = DEFAULTS.impute_eval_every,
    patience: int | None = DEFAULTS.impute_patience,
) -> np.ndarray:
    """Train scHyena on the fold's masked cells, then predict every zero entry (see the module docstring).

    Parameters
    ----------
    adata
        One fold (:func:`scfmbench.impute.protocol.fold_adata`): ``X`` = masked log-normalized matrix.
        All genes are read (full length); gene j is gene id j.
    seed
        Seeds initialisation, batch order and masks (locally); the result is deterministic on CPU.
    d_model, n_layers, order, filter_order, mlp_ratio, dropout
        :class:`~scfmbench.models.schyena.SCHyenaConfig` options.
    steps, batch_size, lr
        Adam steps, cells per step and learning rate of the masked-expression training.
    mask_low, mask_high
        Range of the per-batch masking probability of non-zero entries (paper: 0.05 to 0.4).
    mask_zeros
        Show every zero as the mask token during training too (matches inference; default).
    eval_every, patience
        With ``eval_every``: the fold's validation cells (``obs["split"] == "valid"``) are left out
        of training and their masked MSE (random masks of their observed non-zero entries; the
        held-out entries are zeros there, never read) is scored every ``eval_every`` steps (the
        curve); with ``patience`` too, training stops after that many evaluations without
        improvement and keeps the best state (``steps`` is then a cap). None: every cell trains
        for exactly ``steps`` steps.

    Returns
    -------
    np.ndarray
        (n_cells, n_genes) float32 on the X scale: observed values where X is non-zero, predictions
        (>= 0) where X is zero.
    """
    values = torch.from_numpy(dense_values(adata))  # (N, G)
    device = resolve_device(None)
    config = SCHyenaConfig(
        n_genes=adata.n_vars,
        d_model=d_model,
        n_layers=n_layers,
        order=order,
        filter_order=filter_order,
        mlp_ratio=mlp_ratio,
        dropout=dropout,
    )
    train, valid = values, None
    if eval_every or patience:
        is_valid = (
            adata.obs["split"].astype(str).to_numpy() == "valid"
            if "split" in adata.obs
            else np.zeros(adata.n_obs, bool)
        )
        if not is_valid.any():
            raise InputError(
                "the schyena imputer's monitor (params.schyena.impute_eval_every / impute_patience) needs "
                "validation cells (obs['split'] == 'valid'); the dataset has none: set split.valid_fraction "
                "> 0, or both options to null"
            )
        train, valid = values[torch.from_numpy(~is_valid)], values[torch.from_numpy(is_valid)]
    with seeded(seed, device):
        model = SCHyena(config).to(device)
        hist = train_masked(
            model,
            train,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            mask_range=(mask_low, mask_high),
            generator=torch.Generator().manual_seed(seed),
            mask_zeros=mask_zeros,
            valid=valid,
            eval_every=eval_every,
            patience=patience,
        )
        out = predict_zeros(model, values)
    logger.info(
        "schyena imputer: %d cells x %d genes, %d steps in %.1f s on %s, train loss %.4f -> %.4f",
        *values.shape,
        len(hist.train_loss),
        hist.seconds,
        device,
        hist.train_loss[0],
        hist.train_loss[-1],
    )
    return out.numpy().astype(np.float32, copy=False)
