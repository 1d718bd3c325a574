"""DCA, the deep count autoencoder (Eraslan et al. 2019, Nat Commun 10:390), re-implemented in PyTorch.

The reference is the ``dca`` package (GitHub ``theislab/dca``, v0.3.x, Keras/TensorFlow), which cannot
be installed next to this project (see REFERENCE.md section 6). Every default below names the file
and argument of that package it comes from; where Keras itself supplies the value (optimizer,
callbacks, batch normalization, initializer) the Keras default is used and said so.

Pipeline (``dca.api.dca`` -> ``io.normalize`` -> ``network.ZINBAutoencoder`` -> ``train.train``):

1. Input: size factors ``s_i = total_i / median(total)``, input ``log1p(counts / s_i)`` scaled to
   zero mean and unit variance per gene (``sc.pp.normalize_per_cell``, ``log1p``, ``scale``).
2. Network: Dense -> BatchNorm(center only) -> ReLU for hidden sizes (64, 32, 64); three heads
   from the last hidden layer: mean ``clip(exp(.), 1e-5, 1e6)`` (MeanAct), dispersion
   ``clip(softplus(.), 1e-4, 1e4)`` (DispAct), dropout ``pi = sigmoid(.)``. The mean is multiplied by
   the cell's size factor, so the output is on the scale of the raw counts.
3. Loss: ZINB negative log-likelihood of the raw counts (``loss.ZINB``), mean over entries, plus
   ``ridge * pi^2`` and optional l1/l2 kernel penalties. :func:`zinb_nll` / :func:`nb_nll` follow
   loss.py line by line (the reference); training uses :func:`count_nll`, the same values with
   hand-derived gradients (tested against autograd through the reference), which with a
   tensor-op :func:`digamma`, ``index_select`` batches and multi-tensor optimizer steps makes a
   32 x 2000 batch ~1.5x faster on CPU.
4. Training: RMSprop (lr 1e-3, gradient values clipped at 5), batch 32, up to 300 epochs, the last
   10% of cells as validation set, ReduceLROnPlateau (patience 10) and EarlyStopping (patience 15)
   on the validation loss, Keras semantics (no restoring of the best weights).

Differences from the package, all deliberate: genes with zero counts in every cell are not an error
(``dca()`` asserts) but are left out of the network and get mean 0; cells with zero counts are kept
(``sc.pp.normalize_per_cell`` would drop them) with size factor 0, so their mean is 0.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from scfmbench import InputError
from scfmbench.curves import Curve, report_curve
from scfmbench.data.contract import TARGET_SUM
from scfmbench.impute.methods import register_imputer

logger = logging.getLogger(__name__)

AE_TYPES = ("zinb-conddisp", "nb-conddisp")
OPTIMIZERS = ("rmsprop", "adam")

# network.py: MeanAct = clip(exp(x), 1e-5, 1e6); DispAct = clip(softplus(x), 1e-4, 1e4).
MEAN_MIN, MEAN_MAX = 1e-5, 1e6
DISP_MIN, DISP_MAX = 1e-4, 1e4
# loss.py NB: theta = minimum(theta, 1e6); zero case of ZINB where y_true < 1e-8.
THETA_MAX = 1e6
ZERO_THRESHOLD = 1e-8
# Keras BatchNormalization defaults (network.py uses BatchNormalization(center=True, scale=False)):
# momentum 0.99 (PyTorch convention: 1 - 0.99), epsilon 1e-3.
BN_MOMENTUM, BN_EPS = 0.01, 1e-3
# Keras LeakyReLU default alpha (network.py advanced_activations).
LEAKY_ALPHA = 0.3


@dataclass(frozen=True)
class DCAConfig:
    """DCA hyper-parameters; every default is the ``dca`` package's (file and argument cited)."""

    # Autoencoder type: ZINB with conditional dispersion as in the paper and in earlier api.py
    # (commit 24d6a17) `dca(ae_type='zinb-conddisp')`; the latest api.py (8210adf) and
    # __main__.py `--type` default to 'nb-conddisp' (the same network without the pi head).
    ae_type: str = "zinb-conddisp"
    # api.py `hidden_size=(64, 32, 64)`; network.py Autoencoder(hidden_size=(64, 32, 64)).
    hidden_size: tuple[int, ...] = (64, 32, 64)
    # api.py `hidden_dropout=0.`; a float or one rate per hidden layer (network.py accepts a list).
    hidden_dropout: float | tuple[float, ...] = 0.0
    # network.py Autoencoder(input_dropout=0.); __main__.py `--inputdropout` 0.0.
    input_dropout: float = 0.0
    # api.py `batchnorm=True`; network.py BatchNormalization(center=True, scale=False).
    batchnorm: bool = True
    # api.py `activation='relu'` (also: tanh, elu, selu, softplus, sigmoid, linear, LeakyReLU, PReLU).
    activation: str = "relu"
    # network.py Autoencoder(l1_coef=0., l2_coef=0., l1_enc_coef=0., l2_enc_coef=0.); Keras
    # l1_l2(l1, l2) kernel penalties; the *_enc_* ones replace l1/l2 on encoder + center layers.
    l1_coef: float = 0.0
    l2_coef: float = 0.0
    l1_enc_coef: float = 0.0
    l2_enc_coef: float = 0.0
    # network.py Autoencoder(ridge=0.) -> loss.py ZINB(ridge_lambda): ridge * pi^2 per entry.
    ridge: float = 0.0
    # api.py `normalize_per_cell=True`, `log1p=True`, `scale=True` (io.normalize arguments
    # size_factors, logtrans_input, normalize_input).
    size_factors: bool = True
    log1p: bool = True
    scale: bool = True
    # api.py `epochs=300`, `batch_size=32`; train.py train(epochs=300, batch_size=32).
    epochs: int = 300
    batch_size: int = 32
    # api.py `optimizer='RMSprop'` (earlier api.py: 'rmsprop'); train.py passes clipvalue=clip_grad.
    optimizer: str = "rmsprop"
    # api.py/train.py `learning_rate=None` -> the Keras optimizer default, lr = 0.001.
    learning_rate: float = 1e-3
    # train.py `clip_grad=5.` -> Keras `clipvalue`: each gradient element clipped to [-5, 5].
    clip_grad: float = 5.0
    # api.py `early_stop=15` -> Keras EarlyStopping(monitor='val_loss', patience=15); 0 disables.
    early_stop: int = 15
    # api.py `reduce_lr=10` -> Keras ReduceLROnPlateau(monitor='val_loss', patience=10) with its
    # defaults factor=0.1, min_delta=1e-4 (absolute); 0 disables.
    reduce_lr: int = 10
    reduce_lr_factor: float = 0.1
    reduce_lr_min_delta: float = 1e-4
    # train.py `validation_split=0.1` -> Keras fit(validation_split=0.1): the *last* 10% of the cells
    # (in input order, taken before shuffling) are the validation set.
    validation_split: float = 0.1

    def __post_init__(self) -> None:
        hs = self.hidden_size
        hs = (hs,) if isinstance(hs, int) else tuple(int(h) for h in hs)
        object.__setattr__(self, "hidden_size", hs)
        if not isinstance(self.hidden_dropout, float | int):
            object.__setattr__(self, "hidden_dropout", tuple(float(d) for d in self.hidden_dropout))
        checks = [
            (self.ae_type in AE_TYPES, f"ae_type={self.ae_type!r}; choose one of {list(AE_TYPES)}"),
            (len(hs) > 0 and all(h > 0 for h in hs), f"hidden_size={hs}; need one or more positive widths"),
            (
                self.activation.lower() in _ACTIVATIONS,
                f"activation={self.activation!r}; choose one of {sorted(_ACTIVATIONS)}",
            ),
            (self.optimizer.lower() in OPTIMIZERS, f"optimizer={self.optimizer!r}; choose one of {list(OPTIMIZERS)}"),
            (
                all(0 <= d < 1 for d in self.dropout_rates) and 0 <= self.input_dropout < 1,
                "dropout rates must be in [0, 1)",
            ),
            (
                isinstance(self.hidden_dropout, float | int) or len(self.hidden_dropout) == len(hs),
                "hidden_dropout: give one rate or one per hidden layer",
            ),
            (
                self.epochs >= 1 and self.batch_size >= 1,
                f"epochs={self.epochs}, batch_size={self.batch_size}; both must be >= 1",
            ),
            (self.learning_rate > 0 and self.clip_grad > 0, "learning_rate and clip_grad must be > 0"),
            (
                self.early_stop >= 0 and self.reduce_lr >= 0,
                "early_stop and reduce_lr are patiences in epochs (>= 0; 0 disables)",
            ),
            (0 < self.reduce_lr_factor < 1, f"reduce_lr_factor={self.reduce_lr_factor}; must be in (0, 1)"),
            (0 <= self.validation_split < 1, f"validation_split={self.validation_split}; must be in [0, 1)"),
            (
                min(self.l1_coef, self.l2_coef, self.l1_enc_coef, self.l2_enc_coef, self.ridge) >= 0,
                "penalties (l1/l2/ridge) must be >= 0",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(f"DCAConfig: {msg}.")

    @property
    def dropout_rates(self) -> tuple[float, ...]:
        d = self.hidden_dropout
        return (float(d),) * len(self.hidden_size) if isinstance(d, float | int) else tuple(d)

    @classmethod
    def from_params(cls, params: dict) -> DCAConfig:
        """A config with ``params`` overriding the defaults; an unknown key is an :class:`InputError`."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise InputError(f"dca: unknown parameter(s) {unknown}; valid parameters are {valid}.")
        return cls(**params)


@dataclass
class DCAHistory:
    """Per-epoch training record (Keras ``History.history`` plus the stopping decision)."""

    loss: list[float] = field(default_factory=list)  # training loss, mean over the epoch's batches
    val_loss: list[float] = field(default_factory=list)  # validation loss at the end of the epoch
    lr: list[float] = field(default_factory=list)  # learning rate used during the epoch
    epochs_run: int = 0
    stop_reason: str = ""  # "early_stopping" or "max_epochs"
    seconds: float = 0.0  # wall time of the training loop
    curve: Curve = field(default_factory=lambda: Curve(criterion="valid loss", higher_is_better=False))  # curves.csv


@dataclass
class DCAResult:
    """Output of :func:`fit_dca`; all matrices are (n_cells, n_genes) float32 in input order.

    ``mean`` is the denoised expression on the raw-count scale (network mean times size factor; 0
    for genes with no counts and for cells with no counts). ``dispersion`` and ``pi`` are NaN for
    genes that were not fitted (``gene_mask`` False); ``pi`` is None for ``ae_type='nb-conddisp'``.
    """

    mean: np.ndarray
    dispersion: np.ndarray
    pi: np.ndarray | None
    size_factors: np.ndarray  # (n_cells,)
    gene_mask: np.ndarray  # (n_genes,) bool: genes with at least one count, the ones fitted
    history: DCAHistory
    config: DCAConfig
    seed: int
    device: str
    n_params: int


# ----------------------------------------------------------------------------- likelihoods


def nb_nll(
    x: torch.Tensor, mean: torch.Tensor, disp: torch.Tensor, eps: float = 1e-10, *, reduction: str = "mean"
) -> torch.Tensor:
    """Negative binomial negative log-likelihood, as ``dca/loss.py`` ``NB.loss``.

    ``x`` counts, ``mean`` the NB mean (already times the size factor), ``disp`` the inverse
    dispersion theta (variance ``mean + mean^2 / theta``); theta is clipped at 1e6 and ``eps`` keeps
    the logs finite. NaN entries become +inf (loss.py ``_nan2inf``). ``reduction``: "mean" over
    entries or "none" for the element-wise values.
    """
    theta = torch.clamp(disp, max=THETA_MAX)
    t1 = torch.lgamma(theta + eps) + torch.lgamma(x + 1.0) - torch.lgamma(x + theta + eps)
    t2 = (theta + x) * torch.log1p(mean / (theta + eps)) + x * (torch.log(theta + eps) - torch.log(mean + eps))
    out = _nan_to_inf(t1 + t2)
    return _reduce(out, reduction)


def zinb_nll(
    x: torch.Tensor,
    mean: torch.Tensor,
    disp: torch.Tensor,
    pi: torch.Tensor,
    ridge_lambda: float = 0.0,
    eps: float = 1e-10,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Zero-inflated NB negative log-likelihood plus ``ridge_lambda * pi^2``, as ``dca/loss.py`` ``ZINB.loss``.

    For ``x >= 1e-8``: ``NB(x) - log(1 - pi + eps)``; for ``x < 1e-8``:
    ``-log(pi + (1 - pi) * (theta / (theta + mean + eps))^theta + eps)``. ``reduction`` as in
    :func:`nb_nll`.
    """
    nb_case = nb_nll(x, mean, disp, eps, reduction="none") - torch.log(1.0 - pi + eps)
    theta = torch.clamp(disp, max=THETA_MAX)
    zero_nb = torch.pow(theta / (theta + mean + eps), theta)
    zero_case = -torch.log(pi + (1.0 - pi) * zero_nb + eps)
    out = torch.where(x < ZERO_THRESHOLD, zero_case, nb_case) + ridge_lambda * pi.square()
    return _nan_to_inf(_reduce(out, reduction))


def _nan_to_inf(t: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isnan(t), torch.full_like(t, float("inf")), t)


def _reduce(t: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return t.mean()
    if reduction == "none":
        return t
    raise ValueError(f"reduction={reduction!r}; use 'mean' or 'none'")


# The training loop's likelihood: the same values as nb_nll / zinb_nll (the references above, line
# by line loss.py), computed with hand-derived gradients in one pass. Autograd through the reference
# records ~60 element-wise ops forward and ~100 backward per batch (lgamma, digamma, pow and where
# dominate a 32 x 2000 batch); this path needs ~45 in total and shares the logs between value and
# gradient. tests/test_dca.py checks values and gradients against autograd through the references.


def digamma(z: torch.Tensor) -> torch.Tensor:
    """The digamma function for ``z > 0``, from element-wise tensor ops only.

    ``psi(z) = psi(z + 6) - sum_{k<6} 1 / (z + k)`` and the asymptotic (Bernoulli) series of
    ``psi(w)`` at ``w = z + 6 >= 6``, truncated after ``w^-10`` (error < 2e-10). ``torch.digamma``
    on CPU runs a scalar loop that shifts each small argument up to 10 times (~14 ns per element
    for the dispersions DCA sees, 3-4x this function), and it was the largest cost of a batch.
    """
    acc = torch.reciprocal(z)
    for k in range(1, 6):
        acc += torch.reciprocal(z + k)
    w = z + 6.0
    r = torch.reciprocal(w)
    r2 = r * r
    series = r2 * (1 / 12 - r2 * (1 / 120 - r2 * (1 / 252 - r2 * (1 / 240 - r2 * (1 / 132)))))
    return torch.log(w) - 0.5 * r - series - acc


def count_nll_terms(x, mean, disp, pi, ridge_lambda: float = 0.0, eps: float = 1e-10, *, with_grad: bool = False):
    """Element-wise NB (``pi`` None) or ZINB negative log-likelihood, without the ``lgamma(x + 1)`` term.

    ``lgamma(x + 1)`` depends on the counts only (no gradient); :func:`count_nll` adds its sum
    separately so it can be computed once per cell instead of once per batch. ``disp`` must not
    exceed ``THETA_MAX`` (DispAct keeps it <= 1e4), so loss.py's clip of theta is the identity, and
    must be > 0 (DispAct keeps it >= 1e-4).

    Returns
    -------
    out : Tensor
        Element-wise loss (plus ``ridge_lambda * pi^2`` for ZINB), NaN where the reference is NaN.
    grads : tuple or None
        With ``with_grad``: d out / d (mean, disp, pi) element-wise (``pi``'s None for NB).
    """
    te = disp + eps
    a = te + mean  # theta + eps + mean
    log1p_mt = torch.log1p(mean / te)
    log_te = torch.log(te)
    tx = disp + x
    # NB (loss.py NB.loss): t1 = lgamma(theta + eps) - lgamma(x + theta + eps) (+ lgamma(x + 1));
    # t2 = (theta + x) log1p(mean / (theta + eps)) + x (log(theta + eps) - log(mean + eps)).
    nb = torch.lgamma(te) - torch.lgamma(x + te) + tx * log1p_mt + x * (log_te - torch.log(mean + eps))
    if with_grad:
        g_mean = tx / a - x / (mean + eps)
        g_disp = digamma(te) - digamma(x + te) + log1p_mt - tx * mean / (te * a) + x / te
    if pi is None:
        return nb, ((g_mean, g_disp, None) if with_grad else None)
    # ZINB (loss.py ZINB.loss): x >= 1e-8: NB - log(1 - pi + eps); x < 1e-8:
    # -log(pi + (1 - pi) z + eps) with z = (theta / (theta + mean + eps))^theta.
    one_m_pi = 1.0 - pi
    a0 = disp + mean + eps
    log_r = torch.log(disp) - torch.log(a0)
    z = torch.exp(disp * log_r)
    d = pi + one_m_pi * z + eps
    # Case selection by 0/1 masks (zf * zero_case + nf * nb_case) instead of torch.where, which is
    # ~8x slower on CPU: exact, since both cases are finite for finite inputs with disp > 0.
    zf = (x < ZERO_THRESHOLD).to(x.dtype)
    nf = 1.0 - zf

    def pick(zero_case, nb_case):
        return torch.addcmul(nf * nb_case, zf, zero_case)

    out = pick(-torch.log(d), nb - torch.log(one_m_pi + eps))
    if ridge_lambda:
        out = out + ridge_lambda * pi.square()
    if not with_grad:
        return out, None
    gz = -one_m_pi / d  # d(-log d) / dz
    g_mean = pick(gz * (-disp * z / a0), g_mean)  # dz/dmean = -theta z / a0
    g_disp = pick(gz * z * (log_r + (mean + eps) / a0), g_disp)  # dz/dtheta = z (log r + (mean + eps) / a0)
    g_pi = pick((z - 1.0) / d, 1.0 / (one_m_pi + eps))
    if ridge_lambda:
        g_pi = g_pi + 2.0 * ridge_lambda * pi
    return out, (g_mean, g_disp, g_pi)


class _CountNLL(torch.autograd.Function):
    """Mean NB/ZINB negative log-likelihood whose gradient is computed together with the value."""

    @staticmethod
    def forward(ctx, x, mean, disp, pi, lgamma_x1_sum, ridge_lambda, eps):
        with_grad = any(ctx.needs_input_grad[1:4])
        out, grads = count_nll_terms(x, mean, disp, pi, ridge_lambda, eps, with_grad=with_grad)
        n = out.numel()
        loss = (out.sum() + lgamma_x1_sum) / n
        if with_grad:
            ctx.save_for_backward(*(g / n if g is not None else None for g in grads))
        # loss.py _nan2inf maps NaN entries to inf, so their mean is inf: the same on the total.
        return torch.where(torch.isnan(loss), torch.full_like(loss, float("inf")), loss)

    @staticmethod
    def backward(ctx, grad_out):
        g_mean, g_disp, g_pi = ctx.saved_tensors
        return (
            None,
            grad_out * g_mean,
            grad_out * g_disp,
            (grad_out * g_pi if g_pi is not None else None),
            None,
            None,
            None,
        )


def count_nll(
    x, mean, disp, pi=None, ridge_lambda: float = 0.0, eps: float = 1e-10, *, lgamma_x1_sum=None
) -> torch.Tensor:
    """Mean NB (``pi`` None) or ZINB NLL: the value of :func:`nb_nll` / :func:`zinb_nll`, fast gradients.

    ``lgamma_x1_sum`` is ``lgamma(x + 1).sum()`` if already known (e.g. from per-cell sums).
    """
    if lgamma_x1_sum is None:
        lgamma_x1_sum = torch.lgamma(x + 1.0).sum()
    return _CountNLL.apply(x, mean, disp, pi, lgamma_x1_sum, float(ridge_lambda), float(eps))


# ----------------------------------------------------------------------------- preprocessing


def dca_normalize(
    counts: np.ndarray, *, size_factors: bool = True, log1p: bool = True, scale: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The network input and size factors, as ``dca/io.py`` ``normalize`` (without its filtering).

    ``sc.pp.normalize_per_cell`` scales every cell to the median total count, i.e. divides by the
    size factor ``total / median(total)`` (median over cells with counts); ``sc.pp.log1p``;
    ``sc.pp.scale``: per gene zero mean and unit variance (ddof=1; constant genes get std 1).

    Returns
    -------
    x : np.ndarray
        (n_cells, n_genes) float32 network input.
    sf : np.ndarray
        (n_cells,) float32 size factors (0 for cells without counts; all 1 if ``size_factors`` is False).
    """
    x = np.array(counts, dtype=np.float32)  # a copy: transformed in place below
    totals = x.sum(axis=1, dtype=np.float64)
    if size_factors:
        positive = totals > 0
        median = np.median(totals[positive]) if positive.any() else 1.0
        sf = totals / median
        x /= np.where(positive, sf, 1.0)[:, None].astype(np.float32)
    else:
        sf = np.ones(len(x))
    if log1p:
        np.log1p(x, out=x)
    if scale:
        mu, std = _column_mean_std(x)
        x -= mu.astype(np.float32)
        x /= std.astype(np.float32)
    return x, sf.astype(np.float32)


def _column_mean_std(x: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (ddof=1, zeros replaced by 1) as scanpy's ``scale`` computes them.

    scanpy ``_get_mean_var``: float64 ``E[x^2] - E[x]^2`` times ``n / (n - 1)``; accumulated over
    row chunks here so no full-size temporary is allocated.
    """
    n = len(x)
    s1 = np.zeros(x.shape[1])
    s2 = np.zeros(x.shape[1])
    for s in range(0, n, chunk):
        block = x[s : s + chunk].astype(np.float64)
        s1 += block.sum(axis=0)
        s2 += np.square(block).sum(axis=0)
    mu = s1 / n
    var = np.maximum(s2 / n - mu**2, 0.0) * (n / (n - 1)) if n > 1 else np.zeros_like(mu)
    std = np.sqrt(var)
    std[std == 0] = 1.0
    return mu, std


# ----------------------------------------------------------------------------- network

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
    "leakyrelu": lambda: nn.LeakyReLU(LEAKY_ALPHA),
    "prelu": lambda: nn.PReLU(init=0.0),  # Keras PReLU alpha_initializer='zeros' (one alpha here)
}


def _glorot_linear(n_in: int, n_out: int) -> nn.Linear:
    """Keras Dense with kernel_initializer='glorot_uniform' and a zero bias (network.py `init`)."""
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class CenteredBatchNorm(nn.Module):
    """Keras ``BatchNormalization(center=True, scale=False)``: a learned shift, no learned scale.

    Training normalizes with the batch mean and the *biased* batch variance and moves the running
    statistics towards them: ``moving = momentum * moving + (1 - momentum) * batch`` with momentum
    0.99 and epsilon 1e-3 (Keras ``BatchNormalization`` defaults; its non-fused path, used for 2-D
    Dense outputs, takes ``tf.nn.moments``, i.e. the biased variance). PyTorch's ``batch_norm``
    updates the running variance with the unbiased estimate (n / (n - 1), 32/31 at batch 32), which
    shrinks every prediction by ~1.6% per layer and made the port's masked MSE 2-5% *lower* than the
    ``dca`` package's (issue 18); hence the update is written out here. A one-cell batch (possible as
    the last batch of an epoch) normalizes to exactly 0, so its output is the shift, and, as in
    Keras, still updates the running statistics (mean towards the cell, variance towards 0).
    """

    def __init__(self, n: int):
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, H)
        if not self.training:
            return F.batch_norm(h, self.running_mean, self.running_var, None, self.beta, False, 0.0, BN_EPS)
        var, mean = torch.var_mean(h, dim=0, correction=0)  # biased, as tf.nn.moments
        with torch.no_grad():
            self.running_mean.lerp_(mean, BN_MOMENTUM)  # rm + (1 - 0.99) (mean - rm)
            self.running_var.lerp_(var, BN_MOMENTUM)
        return (h - mean) * torch.rsqrt(var + BN_EPS) + self.beta


class DCAAutoencoder(nn.Module):
    """``network.py`` ``ZINBAutoencoder`` ('zinb-conddisp') or ``NBAutoencoder`` ('nb-conddisp').

    forward(x) -> (mean, disp, pi) for the *normalized* mean (before the size factor); pi is None
    for the NB type. Shapes: x (B, G) -> each output (B, G).
    """

    def __init__(self, n_genes: int, config: DCAConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = [nn.Dropout(config.input_dropout)] if config.input_dropout > 0 else []
        self.dense: list[tuple[nn.Linear, bool]] = []  # (layer, is encoder-or-center) for the penalties
        center = len(config.hidden_size) // 2  # network.py center_idx = floor(len / 2)
        width = n_genes
        for i, (size, rate) in enumerate(zip(config.hidden_size, config.dropout_rates, strict=True)):
            dense = _glorot_linear(width, size)
            self.dense.append((dense, i <= center))
            layers.append(dense)
            if config.batchnorm:
                layers.append(CenteredBatchNorm(size))
            layers.append(_ACTIVATIONS[config.activation.lower()]())
            if rate > 0:
                layers.append(nn.Dropout(rate))
            width = size
        self.body = nn.Sequential(*layers)
        self.mean_head = _glorot_linear(width, n_genes)
        self.disp_head = _glorot_linear(width, n_genes)
        self.pi_head = _glorot_linear(width, n_genes) if config.ae_type == "zinb-conddisp" else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = self.body(x)
        # MeanAct/DispAct clip after the nonlinearity; clipping the pre-activation to the matching
        # range gives the same values and zero gradients outside it, without exp overflowing to inf.
        mean = torch.exp(torch.clamp(self.mean_head(h), np.log(MEAN_MIN), np.log(MEAN_MAX)))
        disp = torch.clamp(F.softplus(self.disp_head(h)), DISP_MIN, DISP_MAX)
        pi = torch.sigmoid(self.pi_head(h)) if self.pi_head is not None else None
        return mean, disp, pi

    def penalty(self) -> torch.Tensor | float:
        """Keras l1_l2 kernel regularizers (network.py): enc coefficients on encoder + center layers if non-zero."""
        c = self.config
        total: torch.Tensor | float = 0.0
        terms = [
            (d.weight, c.l1_enc_coef or c.l1_coef, c.l2_enc_coef or c.l2_coef)
            if enc
            else (d.weight, c.l1_coef, c.l2_coef)
            for d, enc in self.dense
        ]
        heads = [h for h in (self.mean_head, self.disp_head, self.pi_head) if h is not None]
        terms += [(h.weight, c.l1_coef, c.l2_coef) for h in heads]
        for w, l1, l2 in terms:
            if l1:
                total = total + l1 * w.abs().sum()
            if l2:
                total = total + l2 * w.square().sum()
        return total

    def loss(
        self, x_in: torch.Tensor, counts: torch.Tensor, sf: torch.Tensor, lgamma_x1_sum: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Training objective of one batch: likelihood of the counts under mean * size factor, plus penalties.

        ``lgamma_x1_sum``: ``lgamma(counts + 1).sum()`` when known (the loop sums per-cell values
        computed once); the likelihood is :func:`zinb_nll` / :func:`nb_nll`, via :func:`count_nll`.
        """
        mean, disp, pi = self(x_in)
        mean = mean * sf[:, None]  # network.py ColwiseMultLayer([mean, size_factors])
        nll = count_nll(
            counts, mean, disp, pi, self.config.ridge if pi is not None else 0.0, lgamma_x1_sum=lgamma_x1_sum
        )
        return nll + self.penalty()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ----------------------------------------------------------------------------- training


class _Plateau:
    """Keras EarlyStopping / ReduceLROnPlateau bookkeeping (mode 'min').

    An epoch improves if ``value < best - min_delta``; otherwise ``wait`` grows and ``step`` returns
    True once ``wait >= patience`` (Keras >= 2.2 counting); the caller resets after acting.
    """

    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.wait = float("inf"), 0

    def step(self, value: float) -> bool:
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        return self.wait >= self.patience


def _optimizer(model: nn.Module, config: DCAConfig) -> torch.optim.Optimizer:
    # foreach: one multi-tensor kernel per update step instead of a Python loop over the parameters
    # (PyTorch turns it on by default only for CUDA tensors); the arithmetic is the same.
    if config.optimizer.lower() == "rmsprop":
        # Keras RMSprop defaults: rho=0.9, epsilon=1e-7 (K.epsilon()), added outside the sqrt.
        return torch.optim.RMSprop(model.parameters(), lr=config.learning_rate, alpha=0.9, eps=1e-7, foreach=True)
    # Keras Adam defaults: beta_1=0.9, beta_2=0.999, epsilon=1e-7.
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-7, foreach=True)


@torch.no_grad()
def _evaluate(
    model: DCAAutoencoder,
    x_in: torch.Tensor,
    counts: torch.Tensor,
    sf: torch.Tensor,
    lgamma_x1: torch.Tensor,
    chunk: int = 256,
) -> float:
    """Validation loss in inference mode (BatchNorm moving statistics), mean over all entries.

    ``lgamma_x1``: per-cell sums of ``lgamma(counts + 1)`` (the likelihood's count-only term).
    """
    model.eval()
    total = float(lgamma_x1.sum())
    for s in range(0, len(x_in), chunk):
        sl = slice(s, s + chunk)
        mean, disp, pi = model(x_in[sl])
        nll, _ = count_nll_terms(
            counts[sl], mean * sf[sl, None], disp, pi, model.config.ridge if pi is not None else 0.0
        )
        total += float(nll.sum())  # a NaN entry makes the total NaN; mapped to inf below (loss.py _nan2inf)
    loss = total / counts.numel() + float(model.penalty())
    return float("inf") if math.isnan(loss) else loss


@torch.no_grad()
def _lgamma_x1_per_cell(counts: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``lgamma(counts + 1).sum(axis=1)``, computed in row chunks (no full-size temporary)."""
    return torch.cat([torch.lgamma(counts[s : s + chunk] + 1.0).sum(dim=1) for s in range(0, len(counts), chunk)])


def train_dca(
    model: DCAAutoencoder,
    x_in: torch.Tensor,
    counts: torch.Tensor,
    sf: torch.Tensor,
    *,
    generator: torch.Generator,
) -> DCAHistory:
    """``dca/train.py`` ``train``: Keras ``fit`` with validation split, RMSprop, clipvalue and callbacks.

    ``x_in`` (N, G) network input, ``counts`` (N, G) targets, ``sf`` (N,) size factors, all on the
    model's device. ``generator`` (CPU) draws the per-epoch shuffles. Returns the history; the model
    keeps the weights of the last epoch (Keras EarlyStopping default restore_best_weights=False).
    """
    c = model.config
    n = len(x_in)
    n_train = int(n * (1.0 - c.validation_split))  # Keras: split_at = int(len(x) * (1 - split))
    has_val = n_train < n
    if not has_val and (c.early_stop or c.reduce_lr):
        logger.warning(
            "dca: %d cells leave no validation cell at validation_split=%g; early stopping and LR reduction are off.",
            n,
            c.validation_split,
        )
    opt = _optimizer(model, c)
    params = [p for p in model.parameters()]
    lgamma_x1 = _lgamma_x1_per_cell(counts)  # the likelihood's count-only term, once per cell
    early, plateau = _Plateau(c.early_stop, 0.0), _Plateau(c.reduce_lr, c.reduce_lr_min_delta)
    hist = DCAHistory(stop_reason="max_epochs")
    t0 = time.perf_counter()
    for epoch in range(c.epochs):
        model.train()
        lr = opt.param_groups[0]["lr"]
        perm = torch.randperm(n_train, generator=generator).to(x_in.device)  # Keras shuffle=True
        running = torch.zeros((), device=x_in.device)
        for s in range(0, n_train, c.batch_size):
            idx = perm[s : s + c.batch_size]
            # index_select: a row gather, several times faster than advanced indexing on CPU.
            batch = [t.index_select(0, idx) for t in (x_in, counts, sf, lgamma_x1)]
            loss = model.loss(*batch[:3], lgamma_x1_sum=batch[3].sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_value_(params, c.clip_grad, foreach=True)
            opt.step()
            running += loss.detach() * len(idx)
        hist.loss.append(float(running) / n_train)
        hist.lr.append(lr)
        hist.epochs_run = epoch + 1
        step = (epoch + 1) * -(-n_train // c.batch_size)
        if not has_val:
            hist.curve.add(step=step, epoch=epoch + 1, lr=lr, train_loss=hist.loss[-1], valid=None)
            continue
        val = _evaluate(model, x_in[n_train:], counts[n_train:], sf[n_train:], lgamma_x1[n_train:])
        hist.val_loss.append(val)
        hist.curve.add(step=step, epoch=epoch + 1, lr=lr, train_loss=hist.loss[-1], valid=val)
        logger.debug("dca epoch %d: loss %.5f val_loss %.5f lr %.2g", epoch + 1, hist.loss[-1], val, lr)
        # Callback order as in train.py: ReduceLROnPlateau, then EarlyStopping.
        if c.reduce_lr and plateau.step(val):
            for g in opt.param_groups:
                g["lr"] = g["lr"] * c.reduce_lr_factor
            plateau.wait = 0
        if c.early_stop and early.step(val):
            hist.stop_reason = "early_stopping"
            hist.curve.stop("early_stop")
            break
    hist.curve.stop_reason = hist.curve.stop_reason or "epoch_cap"
    report_curve(hist.curve)
    hist.seconds = time.perf_counter() - t0
    return hist


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _dense_counts(counts) -> np.ndarray:
    x = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    if x.ndim != 2:
        raise InputError(f"dca: counts must be a 2-D cells x genes matrix; got shape {x.shape}.")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise InputError("dca: counts contain NaN or inf; DCA needs finite raw counts.")
    if x.size and x.min() < 0:
        raise InputError(
            f"dca: counts contain negative values (minimum {x.min():g}); DCA needs raw counts, not scaled data."
        )
    return x


def fit_dca(
    counts, *, config: DCAConfig = DCAConfig(), seed: int = 0, device: str | torch.device | None = None
) -> DCAResult:
    """Fit DCA to ``counts`` and return the denoised means (``dca(adata, mode='denoise', return_info=True)``).

    Parameters
    ----------
    counts
        (n_cells, n_genes) raw counts, dense or scipy sparse, non-negative.
    config
        Hyper-parameters (defaults: the ``dca`` package's).
    seed
        Seeds initialization, shuffling and dropout; on CPU the result is a function of the seed.
    device
        Torch device; None picks CUDA when available, else CPU.

    Returns
    -------
    DCAResult
        ``mean`` (denoised counts), ``dispersion``, ``pi``, ``size_factors``, ``gene_mask``,
        ``history`` (losses, epochs run, stopping reason), plus config, seed, device, n_params.
    """
    x = _dense_counts(counts)
    n_cells, n_genes = x.shape
    if n_cells < 2:
        raise InputError(f"dca: need at least 2 cells; got {n_cells}.")
    gene_mask = x.sum(axis=0) > 0
    if not gene_mask.any():
        raise InputError("dca: every gene has zero counts in every cell; nothing to fit.")
    if not gene_mask.all():
        logger.info(
            "dca: %d of %d genes have no counts; they get mean 0 and are left out of the network.",
            int((~gene_mask).sum()),
            n_genes,
        )
    x = x[:, gene_mask] if not gene_mask.all() else x
    x_in, sf = dca_normalize(x, size_factors=config.size_factors, log1p=config.log1p, scale=config.scale)
    dev = _resolve_device(device)

    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)  # initialization and dropout draw from the (forked) global RNG
        model = DCAAutoencoder(x.shape[1], config).to(dev)
        t_in, t_counts, t_sf = (torch.from_numpy(a).to(dev) for a in (x_in, x, sf))
        del x_in
        history = train_dca(model, t_in, t_counts, t_sf, generator=torch.Generator().manual_seed(seed))
        mean, disp, pi = _predict(model, t_in)
    mean *= sf[:, None]  # network.py ColwiseMultLayer: the denoised output is on the count scale

    def full(a: np.ndarray | None, fill: float) -> np.ndarray | None:
        if a is None or gene_mask.all():
            return a
        out = np.full((n_cells, n_genes), fill, dtype=np.float32)
        out[:, gene_mask] = a
        return out

    return DCAResult(
        mean=full(mean, 0.0),
        dispersion=full(disp, np.nan),
        pi=full(pi, np.nan),
        size_factors=sf,
        gene_mask=gene_mask,
        history=history,
        config=config,
        seed=seed,
        device=str(dev),
        n_params=model.num_params(),
    )


@torch.no_grad()
def _predict(
    model: DCAAutoencoder, x_in: torch.Tensor, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Normalized mean, dispersion and pi for every cell in inference mode, as float32 numpy arrays."""
    model.eval()
    n, g = x_in.shape
    has_pi = model.pi_head is not None
    outs = [np.empty((n, g), dtype=np.float32) for _ in range(3 if has_pi else 2)]  # filled chunk by chunk
    for s in range(0, n, chunk):
        for out, part in zip(outs, model(x_in[s : s + chunk])):
            out[s : s + chunk] = part.cpu().numpy()
    return outs[0], outs[1], outs[2] if has_pi else None


# ----------------------------------------------------------------------------- imputer adapter


def to_log_normalized(mean: np.ndarray, target_sum: float = TARGET_SUM) -> np.ndarray:
    """``log1p(mean / row total * target_sum)`` (the X scale); rows with total 0 stay 0. float32."""
    totals = mean.sum(axis=1, keepdims=True, dtype=np.float64)
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(mean * scale).astype(np.float32)


@register_imputer("dca")
def dca_imputer(adata, *, seed: int, **params) -> np.ndarray:
    """DCA on the masked counts ``adata.layers["counts"]``, returned on the X scale (log1p of counts per 1e4).

    ``params`` override :class:`DCAConfig` fields by name (e.g. ``epochs=50``); an unknown name is an
    :class:`~scfmbench.InputError` listing the valid ones. Runs on CUDA when available.
    """
    config = DCAConfig.from_params(params)
    if "counts" not in adata.layers:
        raise InputError(
            f"dca: adata.layers['counts'] is missing (layers: {list(adata.layers)}); DCA is fitted to raw counts."
        )
    result = fit_dca(adata.layers["counts"], config=config, seed=seed)
    logger.info(
        "dca: %d epochs (%s), %.1f s on %s",
        result.history.epochs_run,
        result.history.stop_reason,
        result.history.seconds,
        result.device,
    )
    return to_log_normalized(result.mean)
