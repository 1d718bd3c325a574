"""The masked-expression training loop, one for every backbone and masking strategy.

A function with arguments (nanoGPT's train.py without globals): each step takes a batch of cells
(shuffled epochs), lets the strategy draw the masks (:mod:`scfmbench.pretrain.masking`), asks the
model to predict the masked values, and minimizes the MSE on the masked positions (plus the
strategy's auxiliary loss: MAM's L2 term), Adam (optionally amsgrad, optionally the gradient
norm clipped: scHyena clips at 1; MAM's released loop does not). scHyena's
pretraining (:func:`scfmbench.schyena.tasks.pretrain`) and its imputer run it with ``uniform``.

The model is a :class:`MaskedModel`: ``predict(batch, mask, offset=None, shown=None) -> (B, L)`` and
``scorer`` (MAM's module, or None). Data is a :class:`MaskedCells`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from scfmbench import InputError
from scfmbench.curves import Curve, report_curve
from scfmbench.pretrain.masking import MaskingStrategy, Shown
from scfmbench.pretrain.masking.uniform import mask_nonzero

log = logging.getLogger(__name__)


@dataclass
class MaskedBatch:
    """``values`` (B, L) float: what strategies see and the loss targets; ``maskable`` (B, L) bool
    or None (= all); ``inputs``: the backbone's own batch (e.g. TokenizedCells) or None."""

    values: torch.Tensor
    maskable: torch.Tensor | None = None
    inputs: object | None = None

    def eligible(self) -> torch.Tensor:
        return torch.ones_like(self.values, dtype=torch.bool) if self.maskable is None else self.maskable


class MaskedCells:
    """Cells for :func:`train_masked`: ``values`` (N, L), optional ``maskable`` (N, L) and
    ``inputs`` (anything with ``batch(idx)`` and ``to(device)``; a batch of it may be shorter than
    L, trimmed to its longest cell, and the values are trimmed alike)."""

    def __init__(self, values: torch.Tensor, maskable: torch.Tensor | None = None, inputs=None):
        if values.dim() != 2:
            raise InputError(f"cell values must be (n_cells, L), got shape {tuple(values.shape)}")
        self.values, self.maskable, self.inputs = values, maskable, inputs

    def __len__(self) -> int:
        return self.values.shape[0]

    def batch(self, idx: torch.Tensor) -> MaskedBatch:
        idx = idx.to(self.values.device)
        inputs = None if self.inputs is None else self.inputs.batch(idx)
        length = self.values.shape[1] if inputs is None else inputs.gene_ids.shape[1]
        maskable = None if self.maskable is None else self.maskable[idx, :length]
        return MaskedBatch(self.values[idx, :length], maskable, inputs)

    def to(self, device) -> MaskedCells:
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return MaskedCells(self.values.to(device), mv(self.maskable), mv(self.inputs))


class MaskedModel(nn.Module):
    """A backbone read through masks: subclasses implement :meth:`predict`. ``scorer`` is MAM's
    module (trained with the backbone, saved in the checkpoint) or None."""

    def __init__(self, backbone: nn.Module, scorer: nn.Module | None = None):
        super().__init__()
        self.backbone, self.scorer = backbone, scorer

    def predict(
        self, batch: MaskedBatch, mask: torch.Tensor, offset: torch.Tensor | None = None, shown: Shown | None = None
    ) -> torch.Tensor:
        """Predicted values (B, L); positions under ``mask`` must not see their own value, except
        as ``shown`` says (advanced masking: ``shown.token`` show the mask token, the other masked
        positions ``shown.values``); ``offset`` (B, D) is added to every token."""
        raise NotImplementedError


@contextlib.contextmanager
def token_offset(module: nn.Module, offset: torch.Tensor | None):
    """While active, ``offset`` (B, D) is added to every token of ``module``'s output (B, L, D):
    how MAM's summary reaches backbones that have no slot for it (a forward hook on their value
    embedding, so the model file stays as it is)."""
    if offset is None:
        yield
        return
    handle = module.register_forward_hook(lambda mod, args, out: out + offset[:, None, :].to(out.dtype))
    try:
        yield
    finally:
        handle.remove()


@dataclass
class PretrainHistory:
    """What a masked-expression training run did.

    ``train_loss[i]`` and ``mask_prob[i]`` (share of the maskable non-zero values masked; for
    ``uniform`` the drawn p) belong to optimizer step ``i + 1``; ``valid_loss[j]`` is the mean
    masked MSE on the monitoring cells (fixed Bernoulli masks of the non-zero values, the same for
    every strategy) after ``eval_step[j]`` steps (0 = before training). ``seconds``: wall time.
    """

    train_loss: list[float] = field(default_factory=list)
    mask_prob: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    n_train_cells: int = 0
    n_valid_cells: int = 0
    seconds: float = 0.0
    curve: Curve = field(default_factory=lambda: Curve(criterion="valid masked MSE", higher_is_better=False))


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless stream of index batches: shuffled epochs, each cell once per epoch."""
    while True:
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            yield order[i : i + batch_size]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked entries; 0 (still attached to ``pred``) if none is masked."""
    if not mask.any():
        return pred.sum() * 0.0
    return F.mse_loss(pred[mask], target[mask].to(pred.dtype))


def masked_expression_loss(
    model: nn.Module,
    values: torch.Tensor,
    gene_ids: torch.Tensor,
    *,
    p: float,
    generator: torch.Generator,
    pad_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One masked-expression-modelling loss of a :class:`scfmbench.models.schyena.SCHyena` (scHyena's
    rule, ``uniform``): mask with :func:`mask_nonzero`, predict, MSE on the
    masked entries. Returns ``(loss, mask)``.
    """
    mask = mask_nonzero(values, p=p, generator=generator, pad_mask=pad_mask)
    pred = model.predict_expression(values, gene_ids, mask, pad_mask=pad_mask)
    return masked_mse(pred, values, mask), mask


@torch.no_grad()
def monitor_loss(
    model: MaskedModel, data: MaskedCells, mask: torch.Tensor, strategy: MaskingStrategy, *, batch_size: int
) -> float:
    """Masked MSE over all monitoring cells (entries weighted equally), fixed masks."""
    model.eval()
    sse, n = 0.0, 0
    for i in range(0, len(data), batch_size):
        b = data.batch(torch.arange(i, min(i + batch_size, len(data))))
        m = mask[i : i + batch_size, : b.values.shape[1]]
        pred = model.predict(b, m, strategy.summary(b.values, b.eligible(), model.scorer))
        sse += float(((pred - b.values)[m] ** 2).sum())
        n += int(m.sum())
    return sse / max(n, 1)


#: The parameters MAM's ``pretrain/main.py`` trains at ``--nlr`` (1e-4) when it continues from
#: scFoundation's weights, the rest at ``--olr`` (1e-5): the scorer, the value and position
#: embeddings, the decoder's input projection, the final norms and the output head (upstream's
#: names, without DDP's ``module.``, are the scFoundation backbone's own).
RELEASED_NEW_LAYERS = (
    "scorer.",
    "backbone.token_emb.",
    "backbone.pos_emb.",
    "backbone.decoder_embed.",
    "backbone.norm.",
    "backbone.to_final.",
    "backbone.decoder.norm.",
)


def param_groups(
    model: nn.Module, *, lr: float, lr_pretrained: float | None, pretrained: set[str] | None, new_layers: str = "loaded"
):
    """All parameters at ``lr``; with ``lr_pretrained`` and the names of the parameters that came
    from released weights, two groups (MAM: new 1e-4, pretrained 1e-5). ``new_layers``: which
    are new: ``"released"`` MAM's list (:data:`RELEASED_NEW_LAYERS`) and whatever did not load;
    ``"loaded"`` only what did not load."""
    if new_layers not in ("released", "loaded"):
        raise InputError(f"config key 'pretraining.new_layers' must be 'released' or 'loaded', got {new_layers!r}")
    if lr_pretrained is None or not pretrained:
        return model.parameters()
    named = list(model.named_parameters())
    new = {
        n for n, _ in named if n not in pretrained or (new_layers == "released" and n.startswith(RELEASED_NEW_LAYERS))
    }
    return [
        {"params": [p for n, p in named if n in new], "lr": lr},
        {"params": [p for n, p in named if n not in new], "lr": lr_pretrained},
    ]


def train_masked(
    model: MaskedModel,
    data: MaskedCells,
    *,
    strategy: MaskingStrategy,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    valid: MaskedCells | None = None,
    eval_every: int | None = None,
    grad_clip: float | None = 1.0,
    weight_decay: float = 0.0,
    lr_pretrained: float | None = None,
    pretrained: set[str] | None = None,
    amsgrad: bool = False,
    new_layers: str = "loaded",
    patience: int | None = None,
) -> PretrainHistory:
    """Masked expression modelling on ``data``, on the model's device, in place.

    Each step: a batch (shuffled epochs), ``strategy.draw`` (masks, MAM's summary and L2 term),
    ``model.predict`` with the summary added to every token (and what the masked positions show,
    advanced masking), MSE on all masked positions (+ the strategy's auxiliary loss), Adam step
    (``amsgrad``; gradient norm clipped at ``grad_clip``, None: never, as MAM's released loop,
    whose one ``clip_grad_norm_`` call precedes training). Parameter groups: :func:`param_groups`. ``valid``:
    monitoring cells, masked once (Bernoulli of the non-zero values at ``strategy.monitor_ratio``)
    and scored before training, every ``eval_every`` steps and at the end. ``generator`` drives
    batch order and masks. ``patience``: stop once the validation masked MSE has not improved for
    this many evaluations in a row (needs ``valid`` and ``eval_every``) and keep the best
    evaluated state (also when the step cap ends the run); None: ``steps`` steps, the last state
    (MAM's released loop: a fixed number of epochs).
    """
    if steps < 1 or batch_size < 1 or len(data) == 0:
        raise InputError(
            f"masked training needs steps >= 1, batch_size >= 1 and at least one cell; got steps={steps}, "
            f"batch_size={batch_size}, {len(data)} cells"
        )
    if patience is not None and (patience < 1 or not eval_every or valid is None or not len(valid)):
        raise InputError(
            f"early stopping of masked training (patience={patience}) needs patience >= 1, eval_every "
            f"set (got {eval_every}) and validation cells (obs['split'] == 'valid'); set patience to "
            "null for a fixed number of steps"
        )
    device = next(model.parameters()).device
    data = data.to(device)
    hist = PretrainHistory(n_train_cells=len(data), n_valid_cells=0 if valid is None else len(valid))
    valid_mask = None
    if valid is not None and len(valid):
        valid = valid.to(device)
        pad = None if valid.maskable is None else ~valid.maskable
        valid_mask = mask_nonzero(
            valid.values,
            p=strategy.monitor_ratio,
            generator=torch.Generator().manual_seed(int(torch.randint(2**31, (), generator=generator))),
            pad_mask=pad,
        )

    # The curve: a row every ``eval_every`` steps (or every twentieth of the run when nothing is
    # monitored), with the mean training loss since the previous row and, where monitored, the
    # validation masked MSE (row 0: the monitor before training).
    curve_every = eval_every or max(1, steps // 20)

    best = {"loss": float("inf"), "state": None, "bad": 0}

    def monitor(step: int) -> bool:
        """Score the monitoring cells (where there are), add the curve row; True: stop early."""
        valid_loss = None
        if valid_mask is not None:
            hist.eval_step.append(step)
            hist.valid_loss.append(
                valid_loss := monitor_loss(model, valid, valid_mask, strategy, batch_size=max(batch_size, 64))
            )
            log.info("step %d: valid masked MSE %.4f", step, hist.valid_loss[-1])
        record(step, valid_loss)
        if patience is None or step == 0:
            return False
        if valid_loss < best["loss"]:
            best.update(loss=valid_loss, state=copy.deepcopy(model.state_dict()), bad=0)
            return False
        best["bad"] += 1
        return best["bad"] >= patience

    def record(step: int, valid_loss: float | None) -> None:
        since = hist.train_loss[hist.curve.step[-1] if hist.curve.step else 0 :]
        if step == 0 and valid_loss is None:
            return
        hist.curve.add(
            step=step,
            epoch=step * batch_size / len(data),
            lr=opt.param_groups[0]["lr"],
            train_loss=sum(since) / len(since) if since else None,
            valid=valid_loss,
        )

    groups = param_groups(model, lr=lr, lr_pretrained=lr_pretrained, pretrained=pretrained, new_layers=new_layers)
    opt = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, amsgrad=amsgrad)
    start = time.perf_counter()
    monitor(0)
    stream = batches(len(data), batch_size, generator)
    stopped = False
    for step in range(1, steps + 1):
        model.train()
        b = data.batch(next(stream).to(device))
        drawn = strategy.draw(b.values, b.eligible(), generator=generator, scorer=model.scorer)
        loss = masked_mse(model.predict(b, drawn.mask, drawn.summary, drawn.shown), b.values, drawn.mask)
        if drawn.aux_loss is not None:
            loss = loss + drawn.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        hist.train_loss.append(loss.item())
        nonzero = b.eligible() & (b.values != 0)
        hist.mask_prob.append(
            drawn.ratio if drawn.ratio is not None else float((drawn.mask & nonzero).sum() / nonzero.sum().clamp_min(1))
        )
        if eval_every and step % eval_every == 0 and step != steps:
            if stopped := monitor(step):
                break
        elif step % curve_every == 0 and step != steps:
            record(step, None)
    if valid_mask is None:
        hist.curve.criterion = "train loss"
    if not stopped:
        stopped = monitor(steps)
    hist.curve.stop("early_stop" if stopped else "step_cap")
    if best["state"] is not None:
        model.load_state_dict(best["state"])
        log.info("kept the best evaluated state: valid masked MSE %.4f", best["loss"])
    report_curve(hist.curve, "pretrain")
    model.eval()
    hist.seconds = time.perf_counter() - start
    log.info(
        "masked training (%s): %d steps in %.1f s, last train loss %.4f",
        strategy.name,
        len(hist.train_loss),
        hist.seconds,
        hist.train_loss[-1],
    )
    return hist
