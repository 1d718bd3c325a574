"""scGPT's perturbation generator (``scgpt/model/generation_model.py`` ``TransformerGenerator``;
``tutorials/Tutorial_Perturbation.ipynb``) with any attention kernel of the registry, by default as
GenoHoption's ``scgpt/model/generation_modle_gn.py`` (``scGPT_run_pert_gn.py``) runs it.

Per gene token: gene embedding (:class:`~scfmbench.models.scgpt.GeneEncoder`) + the paired control
cell's expression through :class:`~scfmbench.models.scgpt.ContinuousValueEncoder` + a perturbation
flag embedding (``pert_encoder``: ``Embedding(3, E)``; 0 = not perturbed, 1 = perturbed, 2 = pad, as
scGPT's ``pert_pad_id``); the sum goes through ``BatchNorm1d(E, eps=6.1e-5)`` over the embedding
channels (``batchnorm``; GenoHoption's generators and scGPT's before January 2024; scGPT HEAD comments
it out); the shared :class:`~scfmbench.models.scgpt.Encoder`; a per-gene decoder gives the
post-perturbation expression: ``decoder: expr`` (GenoHoption's and older scGPT's ``ExprDecoder``,
Linear-LeakyReLU-Linear-LeakyReLU-Linear to one value) or ``affine`` (scGPT HEAD's
``AffineExprDecoder``: two ExprDecoders, pred = coeff(x) * control value + bias(x)). Parts shared
with the classifier keep its names (``encoder``, ``value_encoder``, ``transformer_encoder``), so
released scGPT weights load into them (:meth:`ScGPTGenerator.from_pretrained`).

``cls_token``: GenoHoption appends a ``<cls>`` token (value 0, flag 0) to every cell for its own
method and joins it to every gene in both directions in the graph (``utils.generate_g`` with
``flag_global=True``), dropped from the output; the scGPT tutorial has none. Here the token sits
at position 0 (no position enters the model, so where it sits changes nothing) and graph kernels
run on :class:`~scfmbench.models.tokenize.TokenGraph` with ``cls_node=False``: gene g is node g, the
CLS token global. Without it (``cls_token=False``) every token takes only its gene's graph edges.

Shapes: B cells, L genes of the batch (all, or ``max_seq_len`` sampled), E = d_model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from scfmbench import InputError
from scfmbench.models.scgpt import ContinuousValueEncoder, Encoder, GeneEncoder, num_params
from scfmbench.models.tokenize import CLS_ID, N_SPECIAL, PAD_ID

PERT_FLAGS = 3  # scGPT: pert_pad_id = 2
PERT_PAD = 2
DECODERS = ("expr", "affine")
BN_EPS = 6.1e-5  # GenoHoption's generation_modle_gn.py and scGPT's generator before January 2024


@dataclass(kw_only=True)
class GeneratorConfig:
    n_genes: int
    d_model: int = 32  # from-scratch CPU size (scGPT: 512)
    n_layers: int = 1  # (scGPT: 12)
    n_heads: int = 2  # (scGPT: 8)
    d_hidden: int = 64  # (scGPT: 512)
    dropout: float = 0.0  # (scGPT's perturbation tutorial: 0.0 with the pretrained model, 0.2 in GenoHoption)
    norm_scheme: str = "post"
    activation: str = "relu"
    attention: str = "full"
    attention_config: dict = field(default_factory=dict)
    batchnorm: bool = True  # BatchNorm1d(d_model, eps=6.1e-5) on the summed embeddings (GenoHoption; scGPT HEAD: none)
    decoder: str = "expr"  # "expr" (GenoHoption's ExprDecoder) or "affine" (scGPT HEAD's AffineExprDecoder)
    cls_token: bool = False  # GenoHoption's <cls> with graph edges to and from every gene (its own method)

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise InputError(f"perturbation.params.scgpt.decoder must be one of {list(DECODERS)}, not {self.decoder!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PerturbBatch:
    gene_ids: torch.Tensor  # (B, L) token ids (gene g -> g + N_SPECIAL)
    values: torch.Tensor  # (B, L) the paired control cell's expression
    pert_flags: torch.Tensor  # (B, L) 0 / 1 / PERT_PAD
    padding: torch.Tensor  # (B, L) True = pad
    target: torch.Tensor | None = None  # (B, L) post-perturbation expression

    def to(self, device) -> PerturbBatch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return PerturbBatch(
            move(self.gene_ids), move(self.values), move(self.pert_flags), move(self.padding), move(self.target)
        )


class ExprDecoder(nn.Module):
    """scGPT's ``ExprDecoder`` (no explicit zero probabilities): per-token MLP to one value."""

    def __init__(self, d_model: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(d_model, d_model),
            nn.LeakyReLU(),
            nn.Linear(d_model, d_model),
            nn.LeakyReLU(),
            nn.Linear(d_model, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).squeeze(-1)  # (B, L, E) -> (B, L)


class AffineExprDecoder(nn.Module):
    """scGPT HEAD's ``AffineExprDecoder`` (its defaults: no activation, no adaptive bias, no zero
    probabilities): pred = coeff(x) * value + bias(x), coeff and bias each an :class:`ExprDecoder`."""

    def __init__(self, d_model: int):
        super().__init__()
        self.coeff_decoder, self.bias_decoder = ExprDecoder(d_model), ExprDecoder(d_model)

    def forward(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return self.coeff_decoder(x) * values + self.bias_decoder(x)  # (B, L)


class ScGPTGenerator(nn.Module):
    """gene + control value + perturbation flag -> encoder -> per-gene expression."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = GeneEncoder(cfg.n_genes + N_SPECIAL, cfg.d_model)
        self.value_encoder = ContinuousValueEncoder(cfg.d_model, dropout=cfg.dropout)
        self.pert_encoder = nn.Embedding(PERT_FLAGS, cfg.d_model, padding_idx=PERT_PAD)
        self.transformer_encoder = Encoder(
            d_model=cfg.d_model,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            d_hidden=cfg.d_hidden,
            attention=cfg.attention,
            attention_config=cfg.attention_config,
            dropout=cfg.dropout,
            activation=cfg.activation,
            norm_scheme=cfg.norm_scheme,
        )
        self.bn = nn.BatchNorm1d(cfg.d_model, eps=BN_EPS) if cfg.batchnorm else None
        self.decoder = AffineExprDecoder(cfg.d_model) if cfg.decoder == "affine" else ExprDecoder(cfg.d_model)

    def forward(self, b: PerturbBatch) -> torch.Tensor:
        gene_ids, values, flags, padding = b.gene_ids, b.values, b.pert_flags, b.padding
        if self.cfg.cls_token:  # GenoHoption's <cls>: value 0, flag 0, never padding; dropped below
            B = gene_ids.shape[0]
            gene_ids = torch.cat([gene_ids.new_full((B, 1), CLS_ID), gene_ids], 1)
            values = torch.cat([values.new_zeros(B, 1), values], 1)
            flags = torch.cat([flags.new_zeros(B, 1), flags], 1)
            padding = torch.cat([padding.new_zeros(B, 1), padding], 1)
        x = self.encoder(gene_ids) + self.value_encoder(values) + self.pert_encoder(flags)  # (B, L, E)
        if self.bn is not None:  # over the E channels, statistics over every (cell, token)
            x = self.bn(x.permute(0, 2, 1)).permute(0, 2, 1)
        x = self.transformer_encoder(x, padding, gene_ids)
        out = self.decoder(x, values) if isinstance(self.decoder, AffineExprDecoder) else self.decoder(x)  # (B, L)
        return out[:, 1:] if self.cfg.cls_token else out

    def num_params(self) -> int:
        return num_params(self)

    @classmethod
    def from_pretrained(
        cls,
        folder,
        *,
        gene_names,
        attention: str,
        attention_config: dict | None = None,
        dropout: float | None = None,
        **options,
    ):
        """Released scGPT weights into the shared parts (genes matched by name through
        :func:`scfmbench.models.pretrained.load_scgpt_checkpoint`); ``pert_encoder``, ``bn`` and
        ``decoder`` start fresh, as upstream (it loads the encoder, value_encoder and
        transformer_encoder prefixes only). ``options``: ``batchnorm``, ``decoder``, ``cls_token``.
        A category-value checkpoint has no continuous value encoder to load: an error."""
        from scfmbench.models.pretrained import load_scgpt_checkpoint

        overrides = {} if dropout is None else {"dropout": dropout}
        clf, report = load_scgpt_checkpoint(
            folder,
            n_classes=1,
            attention=attention,
            attention_config=attention_config,
            gene_names=list(gene_names),
            **overrides,
        )
        if clf.cfg.value_encoding != "continuous":
            raise InputError(
                f"{folder}: the checkpoint's input_emb_style is {clf.cfg.value_encoding!r}; the perturbation "
                "generator needs 'continuous' (scGPT's)"
            )
        c = clf.cfg
        model = cls(
            GeneratorConfig(
                n_genes=c.n_genes,
                d_model=c.d_model,
                n_layers=c.n_layers,
                n_heads=c.n_heads,
                d_hidden=c.d_hidden,
                dropout=c.dropout,
                norm_scheme=c.norm_scheme,
                activation=c.activation,
                attention=attention,
                attention_config=dict(attention_config or {}),
                **options,
            )
        )
        shared = {
            k: v
            for k, v in clf.state_dict().items()
            if k.split(".")[0] in ("encoder", "value_encoder", "transformer_encoder")
        }
        missing, unexpected = model.load_state_dict(shared, strict=False)
        if unexpected:
            raise InputError(f"{folder}: unexpected keys for the generator: {unexpected[:5]}")
        report.notes.append("generator: pert_encoder, bn and decoder are trained from scratch")
        return model, report


def make_batch(
    ctrl: torch.Tensor, target: torch.Tensor | None, perturbed: list[tuple[int, ...]], genes: torch.Tensor
) -> PerturbBatch:
    """A batch over the gene subset ``genes`` (L,) from dense (B, G) control and target rows;
    ``perturbed[i]`` are cell i's perturbed gene indices (flag 1 where they are in ``genes``)."""
    B, L = ctrl.shape[0], genes.shape[0]
    flags = torch.zeros(B, ctrl.shape[1], dtype=torch.long)
    for i, gs in enumerate(perturbed):
        if gs:
            flags[i, list(gs)] = 1
    return PerturbBatch(
        gene_ids=(genes + N_SPECIAL).expand(B, L),
        values=ctrl[:, genes],
        pert_flags=flags[:, genes],
        padding=torch.zeros(B, L, dtype=torch.bool),
        target=None if target is None else target[:, genes],
    )


def sample_genes(n_genes: int, max_len: int, keep: set[int], generator: torch.Generator) -> torch.Tensor:
    """scGPT samples ``max_seq_len`` random genes per batch and often drops the perturbed one: here
    the batch's perturbed genes are always kept, the rest drawn at random; sorted (panel order)."""
    if max_len >= n_genes:
        return torch.arange(n_genes)
    keep_t = torch.tensor(sorted(keep), dtype=torch.long)
    if len(keep_t) >= max_len:
        return keep_t
    rest = torch.ones(n_genes, dtype=torch.bool)
    rest[keep_t] = False
    pool = torch.nonzero(rest).squeeze(1)
    drawn = pool[torch.randperm(len(pool), generator=generator)[: max_len - len(keep_t)]]
    return torch.sort(torch.cat([keep_t, drawn])).values


def mse_loss(pred: torch.Tensor, target: torch.Tensor, *_args) -> torch.Tensor:
    """scGPT's ``masked_mse_loss`` over every sampled gene (no mask in the perturbation task)."""
    return F.mse_loss(pred, target)


def genohoption_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    ctrl: torch.Tensor,
    conditions: list[str],
    *,
    direction_lambda: float = 1e-3,
) -> torch.Tensor:
    """The loss of GenoHoption's ``scGPT_run_pert_gn.py`` (``utils.loss_fct``, GEARS' with gamma 2):
    per condition of the batch, mean((pred - y)^4) + direction_lambda * mean((sign(y - ctrl) -
    sign(pred - ctrl))^2), averaged over the batch's conditions; ``ctrl`` is the control mean on the
    batch's genes. The sign term has no gradient (sign is flat), as upstream."""
    total, groups = pred.new_zeros(()), {}
    for i, c in enumerate(conditions):
        groups.setdefault(c, []).append(i)
    for rows in groups.values():
        p, y = pred[rows], target[rows]
        total = (
            total
            + ((p - y) ** 4).mean()
            + direction_lambda * ((torch.sign(y - ctrl) - torch.sign(p - ctrl)) ** 2).mean()
        )
    return total / len(groups)


LOSSES = {"mse": mse_loss, "genohoption": genohoption_loss}


def check_loss(name: str) -> None:
    if name not in LOSSES:
        raise InputError(f"loss must be one of {sorted(LOSSES)}, not {name!r}")


__all__ = [
    "GeneratorConfig",
    "PerturbBatch",
    "ScGPTGenerator",
    "ExprDecoder",
    "AffineExprDecoder",
    "make_batch",
    "sample_genes",
    "LOSSES",
    "PAD_ID",
]
