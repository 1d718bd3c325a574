"""Training and prediction with the scGPT-style generator (``scgpt-<kernel>[-paperloss]``).

As scGPT's perturbation tutorial and GenoHoption's ``scGPT_run_pert_gn.py``: every cell of a
training condition is a pair (its paired control cell's expression -> its own expression), with
the perturbed genes flagged; control cells are paired with themselves; each batch samples
``max_len`` genes (always keeping the batch's perturbed genes, which scGPT's sampling can drop);
the training loop is :func:`scfmbench.train.fit` (Adam, StepLR, selection on the validation loss
over the validation conditions' cells, all genes); a test condition's prediction is the mean of
its cells' predictions (each from its paired control cell), on every gene.

``-paperloss`` trains with GenoHoption's official loss (``(pred - y)^4`` + 1e-3 direction term,
:func:`~scfmbench.models.scgpt_generator.genohoption_loss`) instead of MSE; selection stays on the
validation MSE. Graph kernels use a gene graph built here from training-condition and control
cells only (co-expression, top_h / delta, plus the vendored TRRUST edges), no CLS node; with
``cls_token`` (default for the graph kernels, GenoHoption's ``flag_global=True``) a ``<cls>`` token
joined to every gene both ways carries a perturbation to every gene. The run record counts the
perturbed genes with no edge to another gene (``graph.perturbed_without_gene_edge``) and with no
path to another gene in the graph the kernel runs on (``graph.perturbed_without_path``: 0 with
the CLS token), with a warning; and :func:`flag_flip_share` (``flag_flip`` in the record): the share
of the other genes whose prediction moves when a test cell's perturbation flags are cleared.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from scfmbench import InputError
from scfmbench.perturbation.data import CTRL, condition_genes, gene_names

if TYPE_CHECKING:  # torch is imported where it runs (a light import for the workflow's rule files)
    import torch

log = logging.getLogger(__name__)

PREFIX, PAPER_LOSS = "scgpt-", "-paperloss"
_TRAIN_KEYS = (
    "max_len",
    "lr",
    "lr_gamma",
    "batch_size",
    "epochs",
    "patience",
    "weight_decay",
    "loss",
    "checkpoint",
    "predict_batch_size",
    "valid_cells",
    "predict_cells",
    "cls_token",
)
# From-scratch CPU defaults (up to 15 epochs over every training pair, the best epoch on validation);
# config/paper.yaml has scGPT's (lr 1e-4, batch 32, 15 full epochs, max_seq_len 1536).
TRAIN_DEFAULTS = dict(
    max_len=128,
    lr=3e-3,
    lr_gamma=0.9,
    batch_size=32,
    epochs=15,
    patience=3,
    weight_decay=0.0,
    loss="mse",
    checkpoint=None,
    predict_batch_size=256,
    valid_cells=None,
    predict_cells=None,
    cls_token=None,
)


def parse_generator(method: str) -> tuple[str, bool] | None:
    """``scgpt-<kernel>[-paperloss]`` -> (kernel, paper loss); None for other ids."""
    from scfmbench.models.attention import KERNELS

    if not is_generator(method):
        return None
    rest = method[len(PREFIX) :]
    paper = rest.endswith(PAPER_LOSS)
    kernel = rest[: -len(PAPER_LOSS)] if paper else rest
    return (kernel, paper) if kernel in KERNELS else None


def is_generator(method: str) -> bool:
    """Whether ``method`` names the generator (``scgpt-...``; the kernel is checked by :func:`parse_generator`)."""
    return method.startswith(PREFIX)


class _Pairs:
    """Training or validation pairs; ``batch(idx)`` samples the batch's genes (seeded)."""

    def __init__(
        self,
        X,
        rows: np.ndarray,
        ctrl_rows: np.ndarray,
        perturbed: list[tuple[int, ...]],
        conditions: np.ndarray,
        *,
        max_len: int,
        generator: torch.Generator | None,
    ):
        self.X, self.rows, self.ctrl_rows, self.perturbed, self.conditions = X, rows, ctrl_rows, perturbed, conditions
        self.max_len, self.generator = max_len, generator

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, idx):
        import torch

        from scfmbench.models.scgpt_generator import make_batch, sample_genes

        idx = np.asarray(idx)
        perturbed = [self.perturbed[i] for i in idx]
        G = self.X.shape[1]
        genes = (
            sample_genes(G, self.max_len, {g for gs in perturbed for g in gs}, self.generator)
            if self.generator is not None
            else torch.arange(G)
        )
        return make_batch(self.X[self.ctrl_rows[idx]], self.X[self.rows[idx]], perturbed, genes), [
            self.conditions[i] for i in idx
        ]


def _gene_graph(adata, train_rows: np.ndarray, *, top_h: int, delta: float, trrust: bool, cls_token: bool = False):
    """Co-expression (training-condition and control cells) + vendored TRRUST, no CLS node; with
    ``cls_token`` the sequences' CLS token (position 0) is joined to every gene both ways."""
    from scfmbench.data.synthetic import vendored_grn_path
    from scfmbench.graphs.build import build_gene_graph
    from scfmbench.graphs.readers import read_trrust
    from scfmbench.models.tokenize import TokenGraph

    tables = [read_trrust(vendored_grn_path("trrust_human"), database="trrust_human")] if trrust else []
    graph = build_gene_graph(
        gene_names(adata), adata.X[train_rows], tables, top_h=top_h, delta=delta, use_grn=trrust, add_cls=False
    )
    return TokenGraph(graph.adjacency.T.tocsr(), cls_node=False, cls_token=cls_token)


def perturbed_without_edge(token_graph, genes) -> list[int]:
    """The genes of ``genes`` (node indices) with no edge to another gene in the gene graph (rows =
    source: gene g's token reaches gene h's only along g -> h), self-loops aside: graph attention
    never carries their perturbation flag to another gene (unless a CLS token joins them all)."""
    a = sp.csr_matrix(token_graph.adjacency, copy=True)
    a.setdiag(0)
    a.eliminate_zeros()
    out_degree = np.diff(a.indptr)
    return sorted(int(g) for g in set(genes) if out_degree[g] == 0)


def flag_flip_share(model, X, ctrl_rows, perturbed, *, device, tol: float = 1e-6) -> dict:
    """How much a trained generator uses the perturbation flag: for each cell (its control row of
    ``X`` and its perturbed gene indices), predict every gene with the flags set and with them
    cleared; the share of the *other* genes whose prediction moves by more than ``tol``. Returns
    the mean share over the cells, its min and max, and the number of cells."""
    import torch

    from scfmbench.models.scgpt_generator import make_batch

    model.eval()
    shares = []
    genes = torch.arange(X.shape[1])
    with torch.no_grad():
        for row, gs in zip(ctrl_rows, perturbed):
            if not gs:
                continue
            on = model(make_batch(X[[row]], None, [gs], genes).to(device)).float().cpu()[0]
            off = model(make_batch(X[[row]], None, [()], genes).to(device)).float().cpu()[0]
            other = torch.ones(X.shape[1], dtype=torch.bool)
            other[list(gs)] = False
            shares.append(float(((on - off).abs()[other] > tol).float().mean()))
    if not shares:
        return {"changed_share": None, "min": None, "max": None, "cells": 0, "tol": tol}
    return {
        "changed_share": float(np.mean(shares)),
        "min": float(np.min(shares)),
        "max": float(np.max(shares)),
        "cells": len(shares),
        "tol": tol,
    }


def predict_generator(
    method: str, adata, split, conditions, *, seed: int, graph_params: dict | None = None, device=None, **params
) -> tuple[np.ndarray, dict]:
    """Train ``scgpt-<kernel>[-paperloss]`` on the split's training conditions, select on validation,
    predict the mean profile of each of ``conditions``. Returns (means, run record)."""
    import torch

    from scfmbench.models.attention import KERNELS
    from scfmbench.models.scgpt import attach_graph
    from scfmbench.models.scgpt_generator import LOSSES, GeneratorConfig, ScGPTGenerator, check_loss
    from scfmbench.models.tokenize import N_SPECIAL
    from scfmbench.perturbation.split import pair_controls
    from scfmbench.provenance import seed_everything
    from scfmbench.train import default_device, fit

    parsed = parse_generator(method)
    if parsed is None:
        from scfmbench.models.attention import KERNELS

        raise InputError(f"{method!r} is not scgpt-<kernel>[-paperloss]; registered kernels are {sorted(KERNELS)}")
    kernel, paper = parsed
    seed_everything(seed)
    device = device or default_device()
    opts = {**TRAIN_DEFAULTS, **{k: params.pop(k) for k in _TRAIN_KEYS if k in params}}
    if paper:
        opts["loss"] = "genohoption"
    check_loss(opts["loss"])
    if params.get("dropout", 0.0) is None:  # the schema's null: GeneratorConfig's default, or the checkpoint's
        params.pop("dropout")
    kernel_config = dict((params.pop("kernel_config", None) or {}).get(kernel) or {})
    if kernel in ("longformer", "bigbird", "diffuser"):
        kernel_config.setdefault("n_global", 0)  # no <cls>: no global token
    # GenoHoption appends <cls> (graph edges to and from every gene) for its own method only
    cls_token = KERNELS[kernel].needs_edges if opts["cls_token"] is None else bool(opts["cls_token"])
    opts["cls_token"] = cls_token

    cond = adata.obs["condition"].astype(str).to_numpy()
    symbols = {g: i for i, g in enumerate(gene_names(adata))}
    perturbed = [tuple(symbols[g] for g in condition_genes(c)) for c in np.unique(cond)]
    pert_of = dict(zip(np.unique(cond), perturbed))
    partner = pair_controls(cond, seed=seed)
    X = torch.from_numpy(np.asarray(adata.X.toarray() if sp.issparse(adata.X) else adata.X, dtype=np.float32))
    which = np.array([split.split.get(c, "") for c in cond])
    train_rows, valid_rows = np.flatnonzero(which == "train"), np.flatnonzero(which == "val")
    if not len(valid_rows):  # selection and early stopping would fall back to the training loss
        from scfmbench.perturbation.methods import thin

        raise thin(
            method,
            split,
            seed,
            "no validation condition (GEARS' second draw left none), and the generator selects "
            "its model on validation cells",
        )
    # Seeded subsets bound the cost of selection and prediction on CPU (None: every cell, as GEARS):
    # ``valid_cells`` validation cells in all; ``predict_cells`` cells (each with its paired control
    # cell) per test condition, whose predictions are averaged.
    sub = np.random.default_rng(seed + 1)
    if opts["valid_cells"] is not None and len(valid_rows) > opts["valid_cells"]:
        valid_rows = np.sort(sub.choice(valid_rows, opts["valid_cells"], replace=False))

    token_graph, graph_record = None, None
    if KERNELS[kernel].needs_edges:
        g = {"top_h": 20, "delta": 0.4, "trrust": True, **(graph_params or {})}
        token_graph = _gene_graph(adata, train_rows, cls_token=cls_token, **g)
        pert_genes = sorted({i for gs in perturbed for i in gs})
        isolated = perturbed_without_edge(token_graph, pert_genes)
        no_path = [] if cls_token else isolated
        names = gene_names(adata)
        if isolated:
            log.warning(
                "%s: %d of %d perturbed genes have no edge to another gene in the gene graph (%s%s); %s",
                method,
                len(isolated),
                len(pert_genes),
                ", ".join(names[isolated[:10]]),
                ", ..." if len(isolated) > 10 else "",
                "they reach the other genes only through <cls>"
                if cls_token
                else "the kernel never carries their perturbation to another gene",
            )
        graph_record = {
            "n_nodes": int(token_graph.adjacency.shape[0]),
            "mean_degree": token_graph.mean_degree(),
            "cls_token": cls_token,
            "perturbed_genes": len(pert_genes),
            "perturbed_without_gene_edge": len(isolated),
            "perturbed_without_path": len(no_path),
            "perturbed_without_gene_edge_names": [str(names[i]) for i in isolated],
        }
    checkpoint = opts.pop("checkpoint")
    load_report = None
    if checkpoint:
        extra = {k: params[k] for k in ("batchnorm", "decoder") if k in params}
        model, load_report = ScGPTGenerator.from_pretrained(
            checkpoint,
            gene_names=gene_names(adata),
            attention=kernel,
            attention_config=kernel_config,
            dropout=params.get("dropout"),
            cls_token=cls_token,
            **extra,
        )
    else:
        try:
            cfg = GeneratorConfig(
                n_genes=adata.n_vars, attention=kernel, attention_config=kernel_config, cls_token=cls_token, **params
            )
        except TypeError as exc:
            raise InputError(
                f"perturbation.params.scgpt: {exc}; allowed keys are "
                f"{sorted({f.name for f in dataclasses.fields(GeneratorConfig)} - {'n_genes', 'attention'} | set(_TRAIN_KEYS) | {'kernel_config'})}"  # noqa: E501 (one f-string expression, unbreakable before Python 3.12)
            ) from None
        model = ScGPTGenerator(cfg)
    if token_graph is not None:
        attach_graph(model, token_graph)

    gen = torch.Generator().manual_seed(seed)

    def pairs(rows, generator):
        return _Pairs(
            X,
            rows,
            partner[rows],
            [pert_of[c] for c in cond[rows]],
            cond[rows],
            max_len=opts["max_len"],
            generator=generator,
        )

    train_pairs = pairs(train_rows, gen)
    ctrl_mean = X[cond == CTRL].mean(0)
    loss_fn = LOSSES[opts["loss"]]

    def loss(model, inputs, idx):
        b, conds = inputs.batch(idx)
        b = b.to(device)
        return loss_fn(model(b), b.target, ctrl_mean.to(device)[b.gene_ids[0] - N_SPECIAL], conds)

    @torch.no_grad()
    def predict_rows(rows, *, targets: bool):
        model.eval()
        full = pairs(rows, None)
        out = []
        step = opts["predict_batch_size"]
        for i in range(0, len(full), step):
            b, _ = full.batch(np.arange(i, min(i + step, len(full))))
            p = model(b.to(device)).float().cpu()
            out.append(((p - b.target) ** 2).mean(1) if targets else p)
        return torch.cat(out) if out else torch.empty(0)

    def score(model):
        return None if not len(valid_rows) else -float(predict_rows(valid_rows, targets=True).mean())

    epochs = opts["epochs"]
    hist = fit(
        model,
        train=lambda epoch: train_pairs,
        loss=loss,
        score=score,
        epochs=epochs,
        batch_size=opts["batch_size"],
        lr=opts["lr"],
        lr_gamma=opts["lr_gamma"],
        patience=opts["patience"],
        seed=seed,
        device=device,
        weight_decay=opts["weight_decay"],
        score_name="-MSE",
    )
    means = []
    for c in conditions:
        rows = np.flatnonzero(cond == c)
        if not len(rows):
            raise InputError(f"condition {c!r} has no cells to predict")
        if opts["predict_cells"] is not None and len(rows) > opts["predict_cells"]:
            rows = np.sort(sub.choice(rows, opts["predict_cells"], replace=False))
        means.append(predict_rows(rows, targets=False).mean(0).numpy())
    # one seeded cell per test condition: does the model read the perturbation flag?
    probe = [sub.choice(np.flatnonzero(cond == c)) for c in conditions]
    flip = flag_flip_share(model, X, partner[probe], [pert_of[c] for c in conditions], device=device)
    record = {
        "attention": kernel, "loss": opts["loss"], "model": model.cfg.to_dict(),
        "train": {**opts, "epochs_limit": epochs},
        "device": str(device), "num_params": model.num_params(), "history": dataclasses.asdict(hist),
        "checkpoint": None if load_report is None else {"path": str(checkpoint), **load_report.to_dict()},
        "graph": graph_record, "flag_flip": flip,
    }  # fmt: skip
    return np.stack(means), record
