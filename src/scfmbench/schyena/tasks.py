"""scHyena pretraining, checkpoints, fine-tuning, doublet detection and CLS embeddings.

Conventions (``REFERENCE.md`` section 2; Oh et al., arXiv 2310.02713):

- **Inputs at full length**: every gene of the dataset in its fixed order (no HVG selection),
  values = the log-normalized ``X`` (``log1p(normalize_total(counts, 1e4))``), gene ids
  ``0 .. G-1``. The embedded datasets have 765 and 300 genes, so cells are held as one dense
  (N, G) float32 tensor.
- **Pretraining** is masked expression modelling, one case of the shared pretraining stage
  (:mod:`scfmbench.pretrain`: its loop, strategy ``uniform``): per batch, p is drawn uniformly from
  ``mask_range`` (paper: 0.05 to 0.4), each non-zero entry is masked with probability p (its value
  replaced by the mask token), and the loss is the MSE on the masked entries. Pretraining sees the
  *training* cells only and monitors the loss on the validation cells (fixed masks): the test
  cells' expression is never used, even though self-supervised pretraining on unlabelled test
  cells would be legitimate, so that no test information of any kind reaches the weights.
- **Fine-tuning**: a fresh linear head on the [CLS] hidden state, the whole model trained with
  :func:`scfmbench.train.fit_classifier` (Adam + StepLR, early stopping on validation macro F1, the
  best validation state restored) on the training cells.
- **Doublet detection**: the same fine-tuning on a dataset augmented by
  :func:`scfmbench.schyena.doublets.simulate_doublets`, "doublet" being one more class.
- **Checkpoints** hold plain data only (model config and run config as JSON-able dicts, the state
  dict as tensors), so :func:`load_checkpoint` reads them with ``torch.load(weights_only=True)``.

Training randomness (initialisation, dropout, batch order, masks) is seeded inside
``torch.random.fork_rng``, so a function called with the same seed gives the same result and
leaves the caller's global RNG state untouched. CUDA is used when present, else the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from scfmbench import InputError
from scfmbench._io import atomic_path
from scfmbench.models.schyena import SCHyena, SCHyenaConfig
from scfmbench.pretrain.loop import MaskedBatch, MaskedCells, MaskedModel, PretrainHistory, token_offset
from scfmbench.pretrain.loop import train_masked as run_masked_loop
from scfmbench.pretrain.masking import build_strategy
from scfmbench.schyena.doublets import DOUBLET, doublet_metrics, simulate_doublets
from scfmbench.schyena.params import DEFAULTS
from scfmbench.train import History, default_device, fit_classifier, predict_logits

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "scfmbench.schyena/1"


# ------------------------------------------------------------------------------------------------
# full-length inputs


def dense_values(adata, rows=None) -> np.ndarray:
    """Log-normalized ``X`` of ``rows`` (all cells if None) as a dense (n, G) float32 array."""
    x = adata.X if rows is None else adata.X[rows]
    return (x.toarray() if sp.issparse(x) else np.asarray(x)).astype(np.float32, copy=False)


@dataclass
class CellBatch:
    """One batch as the model reads it: ``values`` (B, G) float, ``gene_ids`` (B, G) long."""

    values: torch.Tensor
    gene_ids: torch.Tensor

    def to(self, device) -> CellBatch:
        return CellBatch(self.values.to(device), self.gene_ids.to(device))


class CellInputs:
    """Cells at full length for :func:`scfmbench.train.fit_classifier`: ``len()``, ``batch(idx)``, ``to(device)``."""

    def __init__(self, values: torch.Tensor):
        if values.dim() != 2:
            raise InputError(f"cell values must be (n_cells, n_genes), got shape {tuple(values.shape)}")
        self.values = values  # (N, G)
        self.gene_ids = torch.arange(values.shape[1], device=values.device)  # (G,): gene j is id j

    @classmethod
    def from_adata(cls, adata, rows=None) -> CellInputs:
        return cls(torch.from_numpy(dense_values(adata, rows)))

    def __len__(self) -> int:
        return self.values.shape[0]

    def batch(self, idx: torch.Tensor) -> CellBatch:
        idx = idx.to(self.values.device)
        return CellBatch(self.values[idx], self.gene_ids.expand(len(idx), -1))

    def to(self, device) -> CellInputs:
        return CellInputs(self.values.to(device))


class CLSClassifier(nn.Module):
    """Adapter: :class:`CellBatch` -> class logits from the [CLS] token (what ``fit_classifier`` calls)."""

    def __init__(self, backbone: SCHyena):
        super().__init__()
        self.backbone = backbone

    def forward(self, batch: CellBatch) -> torch.Tensor:
        return self.backbone.classify(batch.values, batch.gene_ids)


def _rows(adata, splits) -> np.ndarray:
    split = adata.obs["split"].astype(str).to_numpy()
    return np.flatnonzero(np.isin(split, list(splits)))


def resolve_device(device) -> torch.device:
    """``device`` as a torch.device; None = CUDA when present, else CPU."""
    return torch.device(device) if device is not None else default_device()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Fork the global RNGs (CPU, and the CUDA device in use) and seed them: local, repeatable randomness."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------------------------------------
# masked expression modelling


class SchyenaMasked(MaskedModel):
    """scHyena read through masks (:mod:`scfmbench.pretrain.loop`): every gene at full length, the
    masked values replaced by the mask token; ``mask_zeros`` also shows every zero as the mask
    token (no loss there: a zero's true value is unknown), as the imputer trains so that training
    looks like its inference, where every zero is masked (:mod:`scfmbench.impute.schyena`)."""

    def __init__(self, backbone: SCHyena, scorer: nn.Module | None = None, *, mask_zeros: bool = False):
        super().__init__(backbone, scorer)
        self.mask_zeros = mask_zeros

    def predict(
        self, batch: MaskedBatch, mask: torch.Tensor, offset: torch.Tensor | None = None, shown=None
    ) -> torch.Tensor:
        v = batch.values if shown is None else shown.values  # advanced masking: some masked positions show a value
        gene_ids = torch.arange(v.shape[1], device=v.device).expand(len(v), -1)
        mask = mask if shown is None else shown.token
        shown_as_mask = mask | (batch.values == 0) if self.mask_zeros else mask
        with token_offset(self.backbone.value_adaptor, offset):
            return self.backbone.predict_expression(v, gene_ids, shown_as_mask)


def train_masked(
    model: SCHyena,
    values: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    mask_range: tuple[float, float] = (0.05, 0.4),
    generator: torch.Generator,
    valid: torch.Tensor | None = None,
    mask_zeros: bool = False,
    eval_every: int | None = None,
    grad_clip: float = 1.0,
    patience: int | None = None,
) -> PretrainHistory:
    """scHyena's masked expression modelling on ``values`` (N, G): the shared loop
    (:func:`scfmbench.pretrain.loop.train_masked`) with the ``uniform`` strategy (p ~ U(mask_range)
    per batch, Bernoulli over the non-zero entries), in place.

    ``valid`` (M, G): monitoring cells, masked once with p = the middle of ``mask_range``;
    ``patience``: early stopping on their masked MSE (:func:`scfmbench.pretrain.loop.train_masked`).
    """
    return run_masked_loop(
        SchyenaMasked(model, mask_zeros=mask_zeros),
        MaskedCells(values),
        strategy=build_strategy("uniform", low=mask_range[0], high=mask_range[1]),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        generator=generator,
        valid=None if valid is None else MaskedCells(valid),
        eval_every=eval_every,
        grad_clip=grad_clip,
        patience=patience,
    )


def pretrain(
    adata,
    *,
    config: SCHyenaConfig | None = None,
    steps: int = DEFAULTS.pretrain_steps,
    batch_size: int = DEFAULTS.pretrain_batch_size,
    lr: float = DEFAULTS.pretrain_lr,
    mask_range: tuple[float, float] = (DEFAULTS.mask_low, DEFAULTS.mask_high),
    seed: int = 0,
    device=None,
    eval_every: int | None = None,
    patience: int | None = None,
    strategy=None,
) -> tuple[SCHyena, PretrainHistory]:
    """Pretrain a fresh scHyena by masked expression modelling on the training cells of ``adata``.

    Parameters
    ----------
    adata
        Prepared dataset: log-normalized ``X``, ``obs["split"]``. Cells with split ``train`` are
        trained on, ``valid`` monitored (fixed masks); ``test`` cells are never read.
    config
        Model config; None = the model options of :data:`~scfmbench.schyena.params.DEFAULTS` with
        ``n_genes = adata.n_vars``. Its ``n_genes`` must equal ``adata.n_vars`` (gene j of the
        dataset is gene id j).
    steps, batch_size, lr, mask_range
        Optimizer steps, cells per step, Adam learning rate, range of the per-batch mask probability.
    eval_every, patience
        Score the validation cells every ``eval_every`` steps; stop after ``patience`` evaluations
        without a lower masked MSE and keep the best state (None: ``steps`` steps).
    strategy
        A masking strategy without a scorer (:mod:`scfmbench.pretrain.masking`); None = ``uniform``
        over ``mask_range`` (the paper's).
    seed
        Seeds initialisation, batch order, masks and dropout (locally; global RNGs untouched).
    device
        Torch device; None = CUDA when present, else CPU.

    Returns
    -------
    model : SCHyena
        On ``device``, in eval mode.
    history : PretrainHistory
    """
    config = config or SCHyenaConfig(n_genes=adata.n_vars, **DEFAULTS.model())
    if config.n_genes != adata.n_vars:
        raise InputError(
            f"SCHyenaConfig.n_genes = {config.n_genes} but the dataset has {adata.n_vars} genes; scHyena "
            "reads every gene of the dataset"
        )
    device = resolve_device(device)
    train, valid = _rows(adata, ["train"]), _rows(adata, ["valid"])
    if len(train) == 0:
        raise InputError("pretraining needs training cells (obs['split'] == 'train'); the dataset has none")
    with seeded(seed, device):
        model = SCHyena(config).to(device)
        gen = torch.Generator().manual_seed(seed)
        strategy = strategy or build_strategy("uniform", low=mask_range[0], high=mask_range[1])
        if strategy.needs_scorer:
            raise InputError(
                f"scHyena checkpoints hold the scHyena model only; masking strategy {strategy.name!r} trains a "
                "scorer beside it: use it with the token backbones"
            )
        hist = run_masked_loop(
            SchyenaMasked(model),
            MaskedCells(torch.from_numpy(dense_values(adata, train))),
            strategy=strategy,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            generator=gen,
            valid=MaskedCells(torch.from_numpy(dense_values(adata, valid))) if len(valid) else None,
            eval_every=eval_every,
            patience=patience,
        )
    return model, hist


# ------------------------------------------------------------------------------------------------
# checkpoints


def _plain(obj: Any, *, what: str) -> Any:
    """``obj`` as plain JSON data (dicts, lists, str, numbers, bool, None), or an InputError."""
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} must be JSON-able plain data (dicts, lists, strings, numbers): {e}") from None


def save_checkpoint(path: str | Path, model: SCHyena, run_config: dict[str, Any]) -> None:
    """Write ``{format, model_config, run_config, state_dict}`` with ``torch.save``, atomically.

    ``model_config`` is ``dataclasses.asdict(model.config)``; ``run_config`` (how the weights were
    made: data, seed, options, history) must be JSON-able; tensors are saved on the CPU.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": _plain(dataclasses.asdict(model.config), what="model config"),
        "run_config": _plain(run_config, what="run_config"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, *, device=None) -> tuple[SCHyena, dict[str, Any]]:
    """Read a :func:`save_checkpoint` file (``torch.load(weights_only=True)``).

    Returns the model (on ``device``, default CPU, eval mode) and the run config.
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(
            f"{path}: not a scHyena checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r}); "
            "write it with save_checkpoint"
        )
    model = SCHyena(SCHyenaConfig(**payload["model_config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(torch.device(device) if device is not None else "cpu").eval(), payload["run_config"]


# ------------------------------------------------------------------------------------------------
# fine-tuning


@dataclass
class Finetuned:
    """A fine-tuned classifier and its test predictions.

    ``model``: the fine-tuned copy (eval mode); ``classes``: label of each output, sorted;
    ``cell_ids``, ``truth``, ``predicted``: the test cells, their labels and the predictions;
    ``history``: :class:`scfmbench.train.History`.
    """

    model: SCHyena
    classes: np.ndarray
    cell_ids: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray
    history: History

    def record(self) -> dict[str, Any]:
        """JSON-able summary for a run record (no weights, no predictions)."""
        return {
            "classes": self.classes.tolist(),
            "model": dataclasses.asdict(self.model.config),
            "num_params": self.model.num_params(),
            "history": dataclasses.asdict(self.history),
        }


def finetune_classifier(
    model: SCHyena,
    adata,
    *,
    seed: int,
    epochs: int = DEFAULTS.epochs,
    batch_size: int = DEFAULTS.batch_size,
    lr: float = DEFAULTS.lr,
    lr_gamma: float = DEFAULTS.lr_gamma,
    patience: int = DEFAULTS.patience,
    device=None,
) -> Finetuned:
    """Fine-tune a copy of ``model`` to classify ``obs["cell_type"]`` from [CLS]; predict the test cells.

    A fresh ``Linear(D, n_classes)`` head replaces any classifier (classes = the training labels,
    sorted); every parameter is trained on the ``train`` cells with
    :func:`scfmbench.train.fit_classifier` (Adam, StepLR ``lr_gamma``, early stopping on the macro F1
    of the ``valid`` cells whose class occurs in train; best validation state restored). ``model``
    itself is not modified. ``seed`` seeds the head, dropout and batch order.
    """
    if model.config.n_genes != adata.n_vars:
        raise InputError(
            f"the model reads {model.config.n_genes} genes but the dataset has {adata.n_vars}; fine-tune on the "
            "dataset it was pretrained on"
        )
    device = resolve_device(device)
    split = adata.obs["split"].astype(str).to_numpy()
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    classes = np.unique(labels[train])
    if len(classes) < 2:
        raise InputError(
            f"fine-tuning needs at least two cell types among the training cells, found {classes.tolist()}"
        )
    index = {c: i for i, c in enumerate(classes)}
    valid = np.flatnonzero((split == "valid") & np.isin(labels, classes))  # unseen classes can never be right

    def y(rows):
        return torch.tensor([index[c] for c in labels[rows]], dtype=torch.long)

    with seeded(seed, device):
        backbone = copy.deepcopy(model).to(device)
        backbone.reset_classifier(len(classes))
        train_inputs = CellInputs.from_adata(adata, train)
        hist = fit_classifier(
            CLSClassifier(backbone),
            train=lambda epoch: train_inputs,
            y_train=y(train),
            valid=CellInputs.from_adata(adata, valid),
            y_valid=y(valid),
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            lr_gamma=lr_gamma,
            patience=patience,
            seed=seed,
            device=device,
        )
        logits = predict_logits(
            CLSClassifier(backbone), CellInputs.from_adata(adata, test), batch_size=max(batch_size, 64), device=device
        )
    predicted = classes[logits.argmax(1).numpy()] if len(test) else np.array([], dtype=str)
    log.info("fine-tuned: %s, best epoch %d", hist.stopped, hist.best_epoch)
    return Finetuned(
        model=backbone.eval(),
        classes=classes,
        cell_ids=adata.obs_names[test].to_numpy(),
        truth=labels[test],
        predicted=predicted,
        history=hist,
    )


def detect_doublets(
    model: SCHyena, adata, *, seed: int, rate: float = DEFAULTS.doublet_rate, label: str = DOUBLET, **finetune_options
) -> tuple[Finetuned, dict[str, float]]:
    """Doublet detection: augment every split with simulated doublets, fine-tune with the extra class.

    Doublets come from :func:`~scfmbench.schyena.doublets.simulate_doublets` (``rate``, ``seed``);
    fine-tuning is :func:`finetune_classifier` with ``finetune_options``. Returns the fine-tuned
    result (its test cells are the augmented test split) and
    :func:`~scfmbench.schyena.doublets.doublet_metrics` on it (``accuracy``, ``macro_f1``,
    ``doublet_f1``).
    """
    augmented = simulate_doublets(adata, rate=rate, seed=seed, label=label)
    result = finetune_classifier(model, augmented, seed=seed, **finetune_options)
    return result, doublet_metrics(result.truth, result.predicted, label=label)


# ------------------------------------------------------------------------------------------------
# embeddings


@torch.no_grad()
def cls_embeddings(model: SCHyena, adata, *, batch_size: int = 64, device=None) -> np.ndarray:
    """[CLS] hidden state of every cell of ``adata`` (nothing masked), (n_cells, d_model) float32."""
    device = resolve_device(device)
    model = model.to(device).eval()
    inputs = CellInputs.from_adata(adata)
    out = [
        model.embed(b.values, b.gene_ids).float().cpu()
        for b in (
            inputs.batch(torch.arange(i, min(i + batch_size, len(inputs)))).to(device)
            for i in range(0, len(inputs), batch_size)
        )
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.d_model), np.float32)
