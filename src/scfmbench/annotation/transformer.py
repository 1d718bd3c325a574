"""Annotation with a ``{backbone}-{attention}`` transformer trained on the train split.

One annotator for every backbone (:data:`BACKBONES`): scGPT-style (non-zero genes, binned values),
Geneformer-style (rank-value encoding; gene medians from the training cells) and scBERT-style
(every gene, log2 bins). Graph kernels (``needs_edges``: ``genohoption*``, ``onehop``) run on the
dataset's gene graph, restricted per cell to its input genes; window and random kernels
(``longformer``, ``bigbird``, ``diffuser``) and the dense ones need none.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from scfmbench import InputError
from scfmbench.annotation.base import test_cells
from scfmbench.config import MEAN_DEGREE, kernel_option_names
from scfmbench.models.attention import KERNELS
from scfmbench.models.geneformer import GeneformerClassifier, GeneformerConfig
from scfmbench.models.scbert import ScBERTClassifier, ScBERTConfig
from scfmbench.models.scfoundation import ScFoundation, ScFoundationConfig, tokenize_scfoundation
from scfmbench.models.scgpt import ScGPTClassifier, ScGPTConfig, attach_graph
from scfmbench.models.tokenize import (
    TokenGraph,
    TokenizedCells,
    binned_layer,
    gene_medians,
    tokenize_geneformer,
    tokenize_scbert,
    tokenize_scgpt,
)
from scfmbench.provenance import preserved_rng, seed_everything
from scfmbench.train import TRAIN_KEYS, default_device, fit_classifier, predict_logits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backbone:
    """How a backbone is built and fed: config and model classes, training defaults, tokenizer.

    ``tokenizer(adata, cfg, train_rows, max_len, rng)`` returns ``(tok, resample)``: ``tok(rows)``
    tokenizes those cells; ``resample`` says whether training inputs change from epoch to epoch
    (scGPT's random gene subsets of cells longer than ``max_len``), else they are built once.
    """

    config: type
    model: type
    train_defaults: dict
    tokenizer: Callable


def _scgpt_tokenizer(adata, cfg: ScGPTConfig, train_rows, max_len: int, rng):
    # Every cell binned once, as scGPT's Preprocessor does, ties spread by a generator drawn from
    # the run's (scGPT scgpt/preprocess.py, _digitize side="both"): fixed across epochs.
    X = sp.csr_matrix(adata.X, dtype=np.float64, copy=True)
    X.sort_indices()  # the tie-breaking numbers are drawn in stored order: make it gene order
    bins = binned_layer(X, cfg.n_bins, rng=np.random.default_rng(int(rng.integers(2**63))))

    def tok(rows):
        return tokenize_scgpt(adata.X[rows], n_bins=cfg.n_bins, max_len=max_len, rng=rng, bins=bins[rows])

    expressed = sp.csr_matrix(adata.X[train_rows] > 0)
    return tok, bool((np.diff(expressed.indptr) > max_len).any())


def _geneformer_tokenizer(adata, cfg: GeneformerConfig, train_rows, max_len: int, rng):
    if max_len + (cfg.cls_token == "input") > cfg.max_position:
        raise InputError(
            f"geneformer: max_len={max_len}{' (+ <cls>)' if cfg.cls_token == 'input' else ''} exceeds "
            f"max_position={cfg.max_position}"
        )
    counts = adata.layers["counts"]
    medians = gene_medians(counts[train_rows])  # training cells only

    def tok(rows):
        return tokenize_geneformer(counts[rows], medians, max_len=max_len)

    return tok, False


def _scbert_tokenizer(adata, cfg: ScBERTConfig, train_rows, max_len: int, rng):
    def tok(rows):
        return tokenize_scbert(adata.X[rows], n_bins=cfg.n_bins, log_base=cfg.log_base)

    return tok, False


def _scfoundation_tokenizer(adata, cfg: ScFoundationConfig, train_rows, max_len: int, rng):
    totals = np.asarray(adata.layers["counts"].sum(axis=1)).ravel()  # raw total per cell: S = log10(total)

    def tok(rows):
        return tokenize_scfoundation(
            adata.X[rows], totals[rows], tgthighres=cfg.tgthighres, value_scale=cfg.value_scale
        )

    return tok, False


# Training defaults sized for from-scratch runs on CPU: 3-7 s of training per job at one thread on
# the embedded datasets (6.6-10.8 s per whole job process, imports included, measured on the
# 2-core development machine); the workflow's params override them. lr 5e-3 with small
# batches: from scratch, 10 epochs at 1e-3 left every backbone far from converged. max_steps 270
# = 10 epochs of pbmc68k's 418 training cells, 5 of synthetic's 900.
_TRAIN = dict(epochs=10, max_steps=270, batch_size=16, lr=5e-3, lr_gamma=0.9, patience=4)
BACKBONES: dict[str, Backbone] = {
    "scgpt": Backbone(ScGPTConfig, ScGPTClassifier, dict(_TRAIN, max_len=128), _scgpt_tokenizer),
    "geneformer": Backbone(GeneformerConfig, GeneformerClassifier, dict(_TRAIN, max_len=128), _geneformer_tokenizer),
    "scbert": Backbone(ScBERTConfig, ScBERTClassifier, dict(_TRAIN, epochs=8), _scbert_tokenizer),
    "scfoundation": Backbone(ScFoundationConfig, ScFoundation, dict(_TRAIN), _scfoundation_tokenizer),
}


def _token_graph(graph, adata) -> TokenGraph:
    """A TokenGraph from a GeneGraph, a path to one (``save_graph`` .npz) or a TokenGraph."""
    if isinstance(graph, TokenGraph):
        if graph.n_genes != adata.n_vars:
            raise InputError(f"the gene graph has {graph.n_genes} genes, the dataset {adata.n_vars}")
        return graph
    if isinstance(graph, (str, os.PathLike)):
        from scfmbench.graphs.build import load_graph

        graph = load_graph(graph)
    names = np.asarray(graph.gene_names).astype(str)
    var = np.asarray(adata.var_names).astype(str)
    if names.shape != var.shape or not (names == var).all():
        where = (
            "different gene counts"
            if names.shape != var.shape
            else f"first difference at gene {int(np.flatnonzero(names != var)[0])}"
        )
        raise InputError(
            f"the gene graph's genes ({len(names)}) are not the dataset's var_names ({len(var)}) in order ({where}); "
            "build the graph from this prepared dataset (results/graphs/{dataset}/seed{seed}/full.npz)"
        )
    return TokenGraph.from_gene_graph(graph)


def build_config(spec: Backbone, backbone: str, **kwargs):
    """A backbone's model config from its options, or :class:`InputError` listing the allowed keys
    (the fine-tuning and the pretraining stage build their backbones through it)."""
    try:
        return spec.config(**kwargs)
    except TypeError as exc:
        allowed = sorted(
            {f.name for f in dataclasses.fields(spec.config)} - {"n_genes", "n_classes", "attention"}
            | set(TRAIN_KEYS)
            | {"kernel_config"}
        )
        raise InputError(f"params for backbone {backbone!r}: {exc}; allowed keys are {allowed}") from None


# With a checkpoint the architecture is the checkpoint's; of a backbone's model options only these apply.
CHECKPOINT_OPTIONS = ("dropout", "cell_embedding", "attention_config", "cls_token")


def _load_checkpoint(backbone: str, folder, token_dictionary, adata, *, n_classes: int, attention: str, params: dict):
    """A pretrained scGPT folder or Geneformer (Hugging Face BERT) folder, genes matched by var_names."""
    from scfmbench.models.pretrained import load_geneformer_checkpoint, load_scgpt_checkpoint

    overrides = {k: params[k] for k in CHECKPOINT_OPTIONS if k in params}
    genes = list(np.asarray(adata.var_names).astype(str))
    if backbone == "scgpt":
        if token_dictionary:
            raise InputError(
                "params.scgpt.token_dictionary: scGPT folders carry their vocabulary (vocab.json); remove the key"
            )
        return load_scgpt_checkpoint(folder, n_classes=n_classes, attention=attention, gene_names=genes, **overrides)
    if backbone == "geneformer":
        if not token_dictionary:
            raise InputError(
                "params.geneformer.checkpoint needs params.geneformer.token_dictionary: a JSON file mapping this "
                "dataset's var_names (e.g. gene symbols) to the checkpoint's token ids (Geneformer's "
                "token_dictionary.pkl re-keyed)"
            )
        return load_geneformer_checkpoint(
            folder,
            n_classes=n_classes,
            attention=attention,
            gene_names=genes,
            token_dictionary=token_dictionary,
            **overrides,
        )
    raise InputError(
        f"params.{backbone}.checkpoint: pretrained weights load into the scgpt and geneformer backbones only"
    )


# GenoHoption's official BigBird and Diffuser baselines size their window by the dataset's gene
# graph (REFERENCE.md section 1: "window w = mean graph degree"): a kernel option ``window:
# mean_degree`` becomes the mean in-degree of the graph (self-loops and <cls> edges included: the
# keys a GenoHoption query attends to on average), rounded up to even; the method reads the graph.
def kernel_options(params: dict, attention: str) -> dict:
    """The options a backbone's params give kernel ``attention``: ``attention_config`` when set,
    else ``kernel_config[attention]``."""
    if params.get("attention_config") is not None:
        return dict(params["attention_config"])
    return dict((params.get("kernel_config") or {}).get(attention) or {})


def reads_graph(params: dict, attention: str) -> bool:
    """Whether ``{backbone}-{attention}`` with these params reads the dataset's gene graph: graph
    kernels, and kernels whose window is the graph's mean degree."""
    return KERNELS[attention].needs_edges or kernel_options(params, attention).get("window") == MEAN_DEGREE


def mean_degree_window(graph: TokenGraph) -> int:
    """The window of ``window: mean_degree``: the graph's mean in-degree rounded up to an even
    number (window blocks of w tokens move by w/2), as GenoHoption's code has 14/34/22 for the
    mean degrees 13/33/22 of its Table IV."""
    return max(2, 2 * math.ceil(graph.mean_degree() / 2))


def annotate_transformer(
    adata,
    *,
    backbone: str,
    attention: str,
    seed: int,
    graph=None,
    device=None,
    pretrained=None,
    embed: bool = False,
    **params,
) -> tuple[np.ndarray, dict]:
    """Train a ``{backbone}-{attention}`` classifier on train, early-stop on valid, predict test.

    Parameters
    ----------
    adata
        A prepared dataset (:mod:`scfmbench.data.contract`).
    backbone
        One of :data:`BACKBONES` (``scgpt``, ``geneformer``, ``scbert``).
    attention
        A registered attention kernel.
    seed
        Seeds python, numpy, torch, the batch order and the gene subsampling.
    graph
        The dataset's gene graph (:class:`~scfmbench.graphs.build.GeneGraph`, a path to its
        ``.npz``, or a :class:`TokenGraph`); required by graph kernels, ignored by the others.
    pretrained
        A pretraining checkpoint of this backbone (``results/pretrain/...``, written by
        :mod:`scfmbench.pretrain`): fine-tune it instead of training from scratch (its
        architecture; the classifier head fresh; MAM's summary kept). None: from scratch.
    embed
        Also compute every cell's embedding (the model's ``cell_embedding``, one inference pass in
        eval mode, no grad) after fine-tuning and, for a model that starts from a checkpoint
        (``pretrained`` or ``params.checkpoint``), before it (the zero-shot state). The passes
        restore the random streams they use, so predictions are the same with and without.
    params
        Model options of the backbone's config plus the training options ``max_len, lr, lr_gamma,
        batch_size, epochs, max_steps, patience, weight_decay, amp`` (mixed precision: "bf16",
        "fp16" or None). ``kernel_config`` maps kernel
        names to their options (e.g. ``{longformer: {window: 32}}``), so that one backbone entry
        can size every kernel; the entry of ``attention`` becomes the model's ``attention_config``
        unless that is given itself.

    Returns
    -------
    predictions, record
        Test predictions (labels) and a run record: ``backbone``, ``attention``, ``model`` (config),
        ``train`` (options used), ``seed``, ``device``, ``num_params``, ``history`` and ``graph``
        (nodes, mean degree; None without one); with ``embed``, ``embedding``: a
        :class:`~scfmbench.embedding.CellEmbeddings` (not JSON: the caller writes it to its file).
    """
    if backbone not in BACKBONES:
        raise InputError(f"unknown backbone {backbone!r}; available: {sorted(BACKBONES)}")
    if attention not in KERNELS:
        raise InputError(f"unknown attention {attention!r}; registered kernels are {sorted(KERNELS)}")
    spec = BACKBONES[backbone]
    rng = seed_everything(seed)
    device = device or default_device()
    train_opts = {**spec.train_defaults, **{k: params.pop(k) for k in TRAIN_KEYS if k in params}}
    split = adata.obs["split"].astype(str).to_numpy()
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    classes = np.unique(labels[split == "train"])
    index = {c: i for i, c in enumerate(classes)}
    # Validation cells of a class absent from train can never be right; they stay out of early stopping.
    valid_rows = np.flatnonzero((split == "valid") & np.isin(labels, classes))
    train_rows = np.flatnonzero(split == "train")
    test_rows = np.flatnonzero(test_cells(adata))

    per_kernel = params.pop("kernel_config", None) or {}
    unknown = sorted(set(per_kernel) - set(KERNELS))
    if unknown:
        raise InputError(
            f"params for backbone {backbone!r}: kernel_config names unknown kernels {unknown}; registered "
            f"kernels are {sorted(KERNELS)}"
        )
    if attention in per_kernel and "attention_config" not in params:
        params["attention_config"] = dict(per_kernel[attention])
    token_graph = None
    if reads_graph(params, attention):
        if graph is None:
            why = (
                "runs on a gene graph"
                if KERNELS[attention].needs_edges
                else f"has window: {MEAN_DEGREE} (the graph's mean in-degree)"
            )
            raise InputError(
                f"attention {attention!r} {why}: pass graph= (a GeneGraph or the path of "
                f"results/graphs/{{dataset}}/seed{{seed}}/full.npz); kernels that need none: "
                f"{sorted(k for k, v in KERNELS.items() if not v.needs_edges)} with a numeric window"
            )
        token_graph = _token_graph(graph, adata)
    options = params.get("attention_config") or {}
    if options.get("window") == MEAN_DEGREE:
        options = {**options, "window": mean_degree_window(token_graph)}
    if "seed" in kernel_option_names(attention):
        # The run seed reaches the kernel's random pattern or features (BigBird and Diffuser random
        # edges, Performer projections), as the official code's set_seed(seed) before drawing them
        # (GenoHoption utils.py create_adj_mat); a configured kernel seed is an offset to it.
        options = {**options, "seed": int(options.get("seed", 0)) + seed}
    if options:
        params["attention_config"] = options
    if (
        params.get("cls_token", "") is None
    ):  # geneformer's null: the config's default, or the checkpoint vocabulary's layout
        del params["cls_token"]
    checkpoint, token_dictionary = params.pop("checkpoint", None), params.pop("token_dictionary", None)
    load_report = None
    if pretrained:
        from scfmbench.pretrain.backbones import load_pretrained

        if checkpoint:
            raise InputError(
                f"params.{backbone}.checkpoint (released weights) and a pretraining checkpoint were both given; "
                "pretrain from the released weights instead (pretraining.init)"
            )
        model, load_report = load_pretrained(
            pretrained, backbone=backbone, spec=spec, n_classes=len(classes), attention=attention, params=params
        )
        cfg = model.cfg
    elif checkpoint:
        model, load_report = _load_checkpoint(
            backbone, checkpoint, token_dictionary, adata, n_classes=len(classes), attention=attention, params=params
        )
        cfg = model.cfg
    else:
        cfg = build_config(spec, backbone, n_genes=adata.n_vars, n_classes=len(classes), attention=attention, **params)
        model = spec.model(cfg)
    if KERNELS[attention].needs_edges:
        attach_graph(model, token_graph)
    for module in model.modules():  # scFoundation's freeze option (finetune_model.py), wrapped or not
        if hasattr(module, "freeze_for_finetuning"):
            module.freeze_for_finetuning()

    tok, resample = spec.tokenizer(adata, cfg, train_rows, train_opts.get("max_len", 512), rng)
    train_inputs: TokenizedCells | None = None if resample else tok(train_rows)
    embed_batch = max(train_opts["batch_size"], 64)
    if embed:
        with preserved_rng(rng, device):  # invisible to training: the same predictions with or without embed
            all_cells = tok(np.arange(adata.n_obs))
            start = checkpoint or pretrained
            zeroshot = (
                predict_logits(
                    model.to(device),
                    all_cells,
                    batch_size=embed_batch,
                    device=device,
                    amp=train_opts.get("amp"),
                    output="cell_embedding",
                ).numpy()
                if start
                else None
            )

    def train(epoch: int) -> TokenizedCells:
        return tok(train_rows) if resample else train_inputs

    epochs, cap = train_opts["epochs"], "epoch_cap"
    if train_opts.get("max_steps"):
        by_steps = max(1, math.ceil(train_opts["max_steps"] / math.ceil(len(train_rows) / train_opts["batch_size"])))
        epochs, cap = (by_steps, "step_cap") if by_steps < epochs else (epochs, cap)
    y = lambda rows: torch.tensor([index[c] for c in labels[rows]], dtype=torch.long)  # noqa: E731
    hist = fit_classifier(
        model,
        train=train,
        y_train=y(train_rows),
        valid=tok(valid_rows),
        y_valid=y(valid_rows),
        epochs=epochs,
        batch_size=train_opts["batch_size"],
        lr=train_opts["lr"],
        lr_gamma=train_opts["lr_gamma"],
        patience=train_opts["patience"],
        weight_decay=train_opts.get("weight_decay", 0.0),
        seed=seed,
        device=device,
        amp=train_opts.get("amp"),
        cap=cap,
    )
    logits = predict_logits(
        model, tok(test_rows), batch_size=train_opts["batch_size"], device=device, amp=train_opts.get("amp")
    )
    embedding = None
    if embed:
        from scfmbench.embedding import CellEmbeddings

        finetuned = predict_logits(
            model, all_cells, batch_size=embed_batch, device=device, amp=train_opts.get("amp"), output="cell_embedding"
        ).numpy()
        source = (
            f"{'pretraining checkpoint' if pretrained else 'released weights'} {start} before fine-tuning"
            if start
            else CellEmbeddings.source
        )
        embedding = CellEmbeddings(finetuned, model.embedding_pooling(), zeroshot, source)
    record = {
        "backbone": backbone,
        "attention": attention,
        "model": cfg.to_dict(),
        "train": {**train_opts, "epochs_limit": epochs},
        "seed": seed,
        "device": str(device),
        "num_params": model.num_params(),
        "history": dataclasses.asdict(hist),
        "checkpoint": None if load_report is None else {"path": str(pretrained or checkpoint), **load_report.to_dict()},
        "graph": None
        if token_graph is None
        else {
            "n_nodes": int(token_graph.adjacency.shape[0]),
            "mean_degree": token_graph.mean_degree(),
            "cls_node": token_graph.cls_node,
        },
        **({"embedding": embedding} if embed else {}),
    }
    return classes[logits.argmax(1).numpy()], record
