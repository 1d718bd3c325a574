"""The classification training loop: a function with arguments, linear and commented (nanoGPT's
train.py without module-level globals), so a test can run two steps on CPU.

Inputs are any object with ``len()``, ``.batch(idx)`` (rows ``idx`` as a model input) and
``.to(device)``; the model maps such a batch to logits.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from scfmbench import InputError
from scfmbench.metrics import macro_f1

log = logging.getLogger(__name__)


def default_device() -> torch.device:
    """CUDA when present, else CPU (every training rule runs on both)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    valid_macro_f1: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped: str = ""
    seconds: float = 0.0


# Mixed precision (``amp``): None (float32), "bf16" or "fp16" autocast; fp16 also scales the loss
# (scGPT's fine-tuning: torch.cuda.amp.autocast + GradScaler, as GenoHoption's scGPT scripts).
AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, amp: str | None):
    """The autocast context for ``amp`` on ``device`` (disabled for None)."""
    if amp not in AMP_DTYPES:
        raise InputError(f"amp must be one of {[k for k in AMP_DTYPES if k]} or null (float32), not {amp!r}")
    return torch.autocast(torch.device(device).type, dtype=AMP_DTYPES[amp] or torch.float32, enabled=amp is not None)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs, *, batch_size: int, device, amp: str | None = None) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(0, len(inputs), batch_size):
        with autocast(device, amp):
            out.append(model(inputs.batch(torch.arange(i, min(i + batch_size, len(inputs)))).to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def fit_classifier(model: nn.Module, *, train: Callable[[int], object], y_train: torch.Tensor, valid, y_valid: torch.Tensor, epochs: int, batch_size: int, lr: float, lr_gamma: float = 0.9, patience: int = 5, seed: int = 0, device=None, weight_decay: float = 0.0,
                   amp: str | None = None) -> History:
    """Train with Adam + StepLR (scGPT's fine-tuning recipe), early stopping on validation macro F1.

    ``train(epoch)`` returns the training inputs for that epoch (re-tokenized each epoch so long cells
    see a new random subset of genes). The best validation state is restored at the end. ``amp``:
    mixed precision (:data:`AMP_DTYPES`); weights, optimizer and loss stay float32.
    """
    device = device or default_device()
    model.to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=lr_gamma)
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=amp == "fp16")  # scGPT: GradScaler(enabled=amp)
    hist, best, best_state, bad = History(), -np.inf, None, 0
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        inputs = train(epoch)
        order = torch.randperm(len(inputs), generator=gen)
        losses = []
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            with autocast(device, amp):
                logits = model(inputs.batch(idx).to(device))
            loss = nn.functional.cross_entropy(logits.float(), y_train[idx].to(device))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
        sched.step()
        pred = predict_logits(model, valid, batch_size=batch_size, device=device, amp=amp).argmax(1)
        f1 = macro_f1(y_valid.numpy(), pred.numpy()) if len(y_valid) else -float(np.mean(losses))
        hist.train_loss.append(float(np.mean(losses)))
        hist.valid_macro_f1.append(f1)
        log.info("epoch %d: train loss %.4f, valid macro F1 %.4f", epoch, hist.train_loss[-1], f1)
        if f1 > best:
            best, best_state, bad, hist.best_epoch = f1, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            bad += 1
            if bad >= patience:
                hist.stopped = f"early stopping after epoch {epoch} (no improvement for {patience} epochs)"
                break
    hist.stopped = hist.stopped or f"max epochs ({epochs})"
    if best_state is not None:
        model.load_state_dict(best_state)
    hist.seconds = time.perf_counter() - start
    return hist
