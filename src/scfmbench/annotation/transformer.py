"""Annotation with a ``{backbone}-{attention}`` transformer trained on the train split."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from scfmbench import InputError
from scfmbench.annotation import test_cells
from scfmbench.models.scgpt import ScGPTClassifier, ScGPTConfig
from scfmbench.models.tokenize import tokenize_scgpt
from scfmbench.provenance import seed_everything
from scfmbench.train import default_device, fit_classifier, predict_logits

log = logging.getLogger(__name__)

# Training options (everything else in a backbone's params is a model option).
_TRAIN_KEYS = ("max_len", "lr", "lr_gamma", "batch_size", "epochs", "patience")


def annotate_transformer(adata, *, backbone: str, attention: str, seed: int, device=None, **params) -> tuple[np.ndarray, dict]:
    """Train a classifier on train, early-stop on valid, predict test.

    Returns the test predictions and a run record (model config, training options, history).
    """
    if backbone != "scgpt":
        raise InputError(f"unknown backbone {backbone!r}; available: ['scgpt']")
    rng = seed_everything(seed)
    device = device or default_device()
    train_opts = {k: params.pop(k) for k in _TRAIN_KEYS if k in params}
    split = adata.obs["split"].astype(str).to_numpy()
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    classes = np.unique(labels[split == "train"])
    index = {c: i for i, c in enumerate(classes)}
    # Validation cells of a class absent from train can never be right; they stay out of early stopping.
    valid_rows = np.flatnonzero((split == "valid") & np.isin(labels, classes))
    train_rows = np.flatnonzero(split == "train")
    cfg = ScGPTConfig(n_genes=adata.n_vars, n_classes=len(classes), attention=attention, **params)
    model = ScGPTClassifier(cfg)
    max_len = train_opts.get("max_len", 512)

    def tok(rows):
        return tokenize_scgpt(adata.X[rows], n_bins=cfg.n_bins, max_len=max_len, rng=rng)

    y = lambda rows: torch.tensor([index[c] for c in labels[rows]], dtype=torch.long)  # noqa: E731
    hist = fit_classifier(
        model,
        train=lambda epoch: tok(train_rows),
        y_train=y(train_rows),
        valid=tok(valid_rows),
        y_valid=y(valid_rows),
        epochs=train_opts.get("epochs", 15),
        batch_size=train_opts.get("batch_size", 32),
        lr=train_opts.get("lr", 1e-3),
        lr_gamma=train_opts.get("lr_gamma", 0.9),
        patience=train_opts.get("patience", 5),
        seed=seed,
        device=device,
    )
    logits = predict_logits(model, tok(np.flatnonzero(test_cells(adata))), batch_size=train_opts.get("batch_size", 32), device=device)
    record = {"model": cfg.to_dict(), "train": train_opts, "seed": seed, "device": str(device), "num_params": model.num_params(), "history": dataclasses.asdict(hist)}
    return classes[logits.argmax(1).numpy()], record
