"""The classification training loop: a function with arguments, linear and commented (nanoGPT's
train.py without module-level globals), so a test can run two steps on CPU.

Inputs are any object with ``len()``, ``.batch(idx)`` (rows ``idx`` as a model input) and
``.to(device)``; the model maps such a batch to logits.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from scfmbench import InputError
from scfmbench.curves import Curve, report_curve
from scfmbench.metrics import macro_f1

log = logging.getLogger(__name__)

#: The training options of a transformer fine-tuning (``params.<backbone>`` and the
#: ``pretraining.finetune`` block; everything else in a backbone's params is a model option), read
#: by the annotation transformer and by configuration validation. ``max_steps`` caps the epochs at
#: ceil(max_steps / batches per epoch), so that a dataset with more training cells runs fewer
#: epochs of the same total cost (None: ``epochs`` alone).
TRAIN_KEYS = ("max_len", "lr", "lr_gamma", "batch_size", "epochs", "max_steps", "patience", "weight_decay", "amp")


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
    curve: Curve = field(default_factory=Curve)  # step, epoch, lr, losses per evaluation (curves.csv)


# Mixed precision (``amp``): None (float32), "bf16" or "fp16" autocast; fp16 also scales the loss
# (scGPT's fine-tuning: torch.cuda.amp.autocast + GradScaler, as GenoHoption's scGPT scripts).
AMP_DTYPES = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, amp: str | None):
    """The autocast context for ``amp`` on ``device`` (disabled for None)."""
    if amp not in AMP_DTYPES:
        raise InputError(f"amp must be one of {[k for k in AMP_DTYPES if k]} or null (float32), not {amp!r}")
    return torch.autocast(torch.device(device).type, dtype=AMP_DTYPES[amp] or torch.float32, enabled=amp is not None)


@torch.no_grad()
def predict_logits(
    model: nn.Module, inputs, *, batch_size: int, device, amp: str | None = None, output: str = "forward"
) -> torch.Tensor:
    """One inference pass in eval mode: ``model(batch)`` for every batch of ``inputs``, or the
    model method ``output`` (``"cell_embedding"``: the (n, d) cell embeddings), concatenated on the CPU."""
    model.eval()
    fn = model if output == "forward" else getattr(model, output)
    out = []
    for i in range(0, len(inputs), batch_size):
        with autocast(device, amp):
            out.append(fn(inputs.batch(torch.arange(i, min(i + batch_size, len(inputs)))).to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def fit(
    model: nn.Module,
    *,
    train: Callable[[int], object],
    loss: Callable,
    score: Callable[[nn.Module], float],
    epochs: int,
    batch_size: int,
    lr: float,
    lr_gamma: float = 0.9,
    patience: int = 5,
    seed: int = 0,
    device=None,
    weight_decay: float = 0.0,
    score_name: str = "score",
    amp: str | None = None,
    cap: str = "epoch_cap",
) -> History:
    """The loop every task trains with: Adam + StepLR (scGPT's fine-tuning recipe), early stopping on
    a validation score (higher is better), the best validation state restored at the end.

    ``train(epoch)`` returns the training inputs for that epoch (re-tokenized each epoch so long cells
    see a new random subset of genes); ``loss(model, inputs, idx)`` is the loss of the batch of rows
    ``idx``; ``score(model)`` the validation score after each epoch (``None``: minus the epoch's mean
    training loss). An epoch is one pass over every training input, in a seeded random order (the
    official units: scGPT's StepLR(1, gamma) and its patience count such epochs; no block of an
    arbitrary number of batches stands in for one). ``amp``: mixed
    precision (:data:`AMP_DTYPES`) for the loss's forward pass; weights, optimizer and the loss
    (autocast runs cross-entropy and MSE in float32) stay float32.

    The history's :class:`~scfmbench.curves.Curve` gets one row per epoch (step, epoch, the epoch's
    learning rate and mean training loss, the validation score); ``cap`` names what ``epochs``
    stands for when the loop runs out of them ("epoch_cap", or "step_cap" where a caller turned a
    step budget into epochs).
    """
    device = device or default_device()
    model.to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=lr_gamma)
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=amp == "fp16")  # scGPT: GradScaler(enabled=amp)
    hist, best, best_state, bad, step = History(), -np.inf, None, 0, 0
    hist.curve.criterion = f"valid {score_name}"
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        inputs = train(epoch)
        order = torch.randperm(len(inputs), generator=gen)
        losses, lr_now = [], opt.param_groups[0]["lr"]
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            with autocast(device, amp):
                value = loss(model, inputs, idx)
            opt.zero_grad(set_to_none=True)
            scaler.scale(value.float()).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(value.item())
            step += 1
        sched.step()
        s = score(model)
        if s is None:
            hist.curve.criterion = "-train loss"
        s = -float(np.mean(losses)) if s is None else s
        hist.train_loss.append(float(np.mean(losses)))
        hist.curve.add(step=step, epoch=epoch + 1, lr=lr_now, train_loss=hist.train_loss[-1], valid=s)
        hist.valid_macro_f1.append(s)  # the validation score, whatever it is (name kept for run records)
        log.info("epoch %d: train loss %.4f, valid %s %.4f", epoch, hist.train_loss[-1], score_name, s)
        if s > best:
            best, best_state, bad, hist.best_epoch = s, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            bad += 1
            if bad >= patience:
                hist.stopped = f"early stopping after epoch {epoch} (no improvement for {patience} epochs)"
                hist.curve.stop("early_stop")
                break
    hist.stopped = hist.stopped or f"max epochs ({epochs})"
    hist.curve.stop_reason = hist.curve.stop_reason or cap
    report_curve(hist.curve)
    if best_state is not None:
        model.load_state_dict(best_state)
    hist.seconds = time.perf_counter() - start
    return hist


def fit_classifier(
    model: nn.Module,
    *,
    train: Callable[[int], object],
    y_train: torch.Tensor,
    valid,
    y_valid: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    lr_gamma: float = 0.9,
    patience: int = 5,
    seed: int = 0,
    device=None,
    weight_decay: float = 0.0,
    amp: str | None = None,
    cap: str = "epoch_cap",
) -> History:
    """:func:`fit` with cross-entropy and early stopping on validation macro F1 (minus the training
    loss when there is no validation cell); ``amp`` as in :func:`fit`."""
    device = device or default_device()

    def loss(model, inputs, idx):
        return nn.functional.cross_entropy(model(inputs.batch(idx).to(device)).float(), y_train[idx].to(device))

    def score(model):
        if not len(y_valid):
            return None
        pred = predict_logits(model, valid, batch_size=batch_size, device=device, amp=amp).argmax(1)
        return macro_f1(y_valid.numpy(), pred.numpy())

    return fit(
        model,
        train=train,
        loss=loss,
        score=score,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        lr_gamma=lr_gamma,
        patience=patience,
        seed=seed,
        device=device,
        weight_decay=weight_decay,
        score_name="macro F1",
        amp=amp,
        cap=cap,
    )
