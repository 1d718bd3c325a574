"""Every option of the ``params.schyena`` config entry, with its default, in one dataclass.

The config schema (``workflow/schemas/config.schema.yaml``, ``params.schyena``) repeats these
names and defaults with a description each; ``tests/test_schyena_tasks.py`` checks that the two
agree. Defaults are sized for the embedded datasets on a 2-core CPU (the paper does not state its
model size or training budget): a narrow two-block model and a few dozen optimizer steps per job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from scfmbench import InputError

#: Keys of :class:`SchyenaParams` that are :class:`~scfmbench.models.schyena.SCHyenaConfig` fields.
MODEL_KEYS = ("d_model", "n_layers", "order", "filter_order", "mlp_ratio", "dropout")


@dataclass(frozen=True, kw_only=True)
class SchyenaParams:
    """scHyena options for every rule (model, pretraining, fine-tuning, doublets, imputation, UMAP).

    Attributes
    ----------
    d_model, n_layers, order, filter_order, mlp_ratio, dropout
        Model options (:class:`~scfmbench.models.schyena.SCHyenaConfig`); ``n_genes`` is the
        dataset's gene count.
    pretrain_steps, pretrain_batch_size, pretrain_lr, pretrain_eval_every, pretrain_patience
        Masked-expression pretraining on the training cells: optimizer steps (a cap when
        ``pretrain_patience`` stops early on the validation masked MSE, scored every
        ``pretrain_eval_every`` steps), cells per step,
        Adam learning rate.
    mask_low, mask_high
        Range of the per-batch masking probability of non-zero entries (paper: 0.05 to 0.4).
    epochs, batch_size, lr, lr_gamma, patience
        Fine-tuning (cell types and doublets): :func:`scfmbench.train.fit_classifier`'s
        options (Adam + StepLR, early stopping on validation macro F1).
    doublet_rate
        Fraction of simulated doublets in each split after augmentation (paper: 10%).
    impute_steps, impute_batch_size, impute_lr, impute_mask_zeros, impute_eval_every, impute_patience
        The imputer's own masked-expression training on each fold's (masked) cells; see
        :func:`scfmbench.impute.schyena.schyena_imputer`.
    umap_neighbors
        Neighbours of the kNN graph behind the UMAP of CLS embeddings.
    """

    d_model: int = 32
    n_layers: int = 1
    order: int = 2
    filter_order: int = 16
    mlp_ratio: int = 2
    dropout: float = 0.0
    pretrain_steps: int = 40
    pretrain_batch_size: int = 32
    pretrain_lr: float = 0.01
    pretrain_eval_every: int | None = None
    pretrain_patience: int | None = None
    mask_low: float = 0.05
    mask_high: float = 0.4
    epochs: int = 15
    batch_size: int = 16
    lr: float = 0.003
    lr_gamma: float = 0.9
    patience: int = 5
    doublet_rate: float = 0.1
    impute_steps: int = 30
    impute_batch_size: int = 16
    impute_lr: float = 0.005
    impute_mask_zeros: bool = True
    impute_eval_every: int | None = None
    impute_patience: int | None = None
    umap_neighbors: int = 15

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None) -> SchyenaParams:
        """Build from a config entry; an unknown key is an :class:`InputError` listing the allowed ones."""
        params = dict(params or {})
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise InputError(f"config key 'params.schyena': unknown key(s) {unknown}; allowed keys are {allowed}")
        out = cls(**params)
        if not 0.0 <= out.mask_low <= out.mask_high <= 1.0:
            raise InputError(
                "config key 'params.schyena': need 0 <= mask_low <= mask_high <= 1, got "
                f"{out.mask_low} and {out.mask_high}"
            )
        if not 0.0 < out.doublet_rate < 1.0:
            raise InputError(f"config key 'params.schyena.doublet_rate': must be in (0, 1), got {out.doublet_rate}")
        return out

    def model(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~scfmbench.models.schyena.SCHyenaConfig` (without n_genes)."""
        return {k: getattr(self, k) for k in MODEL_KEYS}

    def pretrain(self) -> dict[str, Any]:
        """Keyword arguments for :func:`scfmbench.schyena.tasks.pretrain` (besides config and seed)."""
        return {
            "steps": self.pretrain_steps,
            "batch_size": self.pretrain_batch_size,
            "lr": self.pretrain_lr,
            "mask_range": (self.mask_low, self.mask_high),
            "eval_every": self.pretrain_eval_every,
            "patience": self.pretrain_patience,
        }

    def finetune(self) -> dict[str, Any]:
        """Keyword arguments for :func:`scfmbench.schyena.tasks.finetune_classifier`."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "lr_gamma": self.lr_gamma,
            "patience": self.patience,
        }

    def imputer(self) -> dict[str, Any]:
        """Keyword arguments for the ``schyena`` imputer (:func:`scfmbench.impute.schyena.schyena_imputer`)."""
        return {
            **self.model(),
            "steps": self.impute_steps,
            "batch_size": self.impute_batch_size,
            "lr": self.impute_lr,
            "mask_low": self.mask_low,
            "mask_high": self.mask_high,
            "mask_zeros": self.impute_mask_zeros,
            "eval_every": self.impute_eval_every,
            "patience": self.impute_patience,
        }


DEFAULTS = SchyenaParams()
