"""Loading released checkpoints into our backbones, with any attention kernel swapped in.

No kernel adds parameters, so a checkpoint trained with dense attention loads into
``scgpt-genohoption-p`` or ``geneformer-longformer`` exactly as into ``-full``; what changes is
only which keys each query attends to.

- :func:`load_scgpt_checkpoint`: a scGPT model folder (``args.json``, ``vocab.json``,
  ``best_model.pt``), as released by ``bowang-lab/scGPT`` (e.g. ``scGPT_human``). Key names of its
  ``TransformerModel`` (``scgpt/model/model.py``): ``encoder.embedding``/``encoder.enc_norm``,
  ``value_encoder.{linear1,linear2,norm}`` (continuous) or ``value_encoder.{embedding,enc_norm}``
  (category), ``transformer_encoder.layers.N.self_attn.Wqkv`` (flash-attn's packed
  ``(three h d)`` projection; ``_impl.Wqkv`` with the flash-attn 2 shim, ``in_proj_weight`` with
  ``nn.MultiheadAttention``) and ``.out_proj``, ``linear1``/``linear2``, ``norm1``/``norm2``;
  heads ``decoder`` (expression), ``mvc_decoder``, ``cls_decoder``.
- :func:`load_geneformer_checkpoint`: a Hugging Face BERT folder (``config.json`` + weights, e.g.
  ``ctheodoris/Geneformer``), read with ``transformers.BertModel.from_pretrained`` from the local
  folder only (no download).

Both return ``(model, LoadReport)``: which of our parameters came from the checkpoint, which were
left at their initialisation (``missing``), which checkpoint keys were not understood
(``unexpected``), which were understood and deliberately unused (``ignored``: pretraining heads),
and which of the dataset's genes the vocabulary lacks.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from scfmbench import InputError
from scfmbench.models.geneformer import GeneformerClassifier, GeneformerConfig
from scfmbench.models.scgpt import ScGPTClassifier, ScGPTConfig
from scfmbench.models.tokenize import CLS_ID, N_SPECIAL, PAD_ID


@dataclass
class LoadReport:
    """What a checkpoint load did (see the module docstring)."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    genes_missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _special(token: str) -> bool:
    return token.startswith("<") and token.endswith(">")


def _gene_rows(
    vocab: dict[str, int], gene_names, *, pad: str, cls: str, report: LoadReport
) -> tuple[list[str], np.ndarray]:
    """Checkpoint embedding row of each of our tokens (-1: not in the vocabulary, left fresh).

    Our layout: 0 <pad>, 1 <cls>, gene g -> g + 2. Without ``gene_names`` the genes are the
    vocabulary's non-special tokens in id order.
    """
    if gene_names is None:
        genes = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if not _special(t)]
    else:
        genes = [str(g) for g in gene_names]
    rows = np.array([vocab.get(pad, -1), vocab.get(cls, -1)] + [vocab.get(g, -1) for g in genes], dtype=np.int64)
    report.genes_missing = [g for g, r in zip(genes, rows[N_SPECIAL:]) if r < 0]
    for name, r in ((pad, rows[PAD_ID]), (cls, rows[CLS_ID])):
        if r < 0:
            report.notes.append(f"the vocabulary has no {name} token: its embedding keeps its initialisation")
    if report.genes_missing:
        report.notes.append(
            f"{len(report.genes_missing)} of {len(genes)} genes are not in the vocabulary: their "
            "embeddings keep their initialisation"
        )
    return genes, rows


def _gather_rows(fresh: torch.Tensor, table: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """``fresh`` with row i replaced by ``table[rows[i]]`` wherever ``rows[i] >= 0``."""
    if rows.size and int(rows.max()) >= table.shape[0]:
        raise InputError(
            f"the vocabulary refers to embedding row {int(rows.max())}, the checkpoint's "
            f"table has {table.shape[0]} rows"
        )
    out = fresh.clone()
    have = torch.from_numpy(rows >= 0)
    out[have] = table[torch.from_numpy(rows[rows >= 0])].to(out.dtype)
    return out


def _finish(model: torch.nn.Module, new_state: dict[str, torch.Tensor], report: LoadReport) -> None:
    """Load ``new_state`` (a subset of our keys, shapes checked) and fill ``loaded``/``missing``."""
    state = model.state_dict()
    for key, value in new_state.items():
        if state[key].shape != value.shape:
            raise InputError(
                f"checkpoint tensor for {key} has shape {tuple(value.shape)}, the model "
                f"expects {tuple(state[key].shape)}"
            )
        state[key] = value.to(state[key].dtype)
    model.load_state_dict(state, strict=True)
    report.loaded = sorted(new_state)
    report.missing = sorted(set(state) - set(new_state))


# ---------------------------------------------------------------------------------------------
# scGPT


# official key (regex) -> our key; anything matching SCGPT_IGNORED is a pretraining head we do not use
_SCGPT_RULES = [
    (
        r"^transformer_encoder\.layers\.(\d+)\.self_attn\.(?:_impl\.)?Wqkv\.(weight|bias)$",
        r"transformer_encoder.layers.\1.self_attn.qkv.\2",
    ),
    (
        r"^transformer_encoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$",
        r"transformer_encoder.layers.\1.self_attn.qkv.\2",
    ),
    (
        r"^transformer_encoder\.layers\.(\d+)\.self_attn\.(?:_impl\.)?out_proj\.(weight|bias)$",
        r"transformer_encoder.layers.\1.self_attn.out.\2",
    ),
    (
        r"^transformer_encoder\.layers\.(\d+)\.(linear1|linear2|norm1|norm2)\.(weight|bias)$",
        r"transformer_encoder.layers.\1.\2.\3",
    ),
    (r"^encoder\.(embedding\.weight|enc_norm\.weight|enc_norm\.bias)$", r"encoder.\1"),
    (r"^value_encoder\.((?:linear1|linear2|norm|embedding|enc_norm)\.(?:weight|bias))$", r"value_encoder.\1"),
    (r"^cls_decoder\.(.+)$", r"cls_decoder.\1"),
]
SCGPT_IGNORED = re.compile(
    r"^(decoder|mvc_decoder|flag_encoder|batch_encoder|dsbn|bn|grad_reverse_discriminator|sim)\.|"
    r"^transformer_encoder\.layers\.\d+\.self_attn\.cross_attn\."  # generative (FlashscGPTLayer) cross-attention
)


def scgpt_key(key: str) -> str | None:
    """Our parameter name for an official scGPT state-dict key (None: not one of ours)."""
    for pattern, repl in _SCGPT_RULES:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path} is missing: a scGPT model folder holds args.json, vocab.json and best_model.pt")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def safe_load_refusal(path, exc: BaseException) -> str:
    """Why the safe loader (``torch.load(weights_only=True)``) refused ``path``, naming the blocked
    global. torch's own message opens with advice to disable the check; it is never repeated here:
    a checkpoint must hold tensors only."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"GLOBAL\s+([A-Za-z_][\w.]*)", text) or re.search(
        r"Unsupported (?:class|global:?)\s+([A-Za-z_][\w.]*)", text
    )
    if found:
        why = (
            f"it holds the Python object {found.group(1)}, which the safe loader (torch.load "
            "weights_only=True) does not unpickle"
        )
    else:
        reason = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
        first = (
            reason.group(1)
            if reason
            else next(
                (line for line in text.splitlines() if line.strip() and "weights_only" not in line), type(exc).__name__
            )
        )
        why = f"the safe loader (torch.load weights_only=True) refused it ({type(exc).__name__}: {first.strip()})"
    return (
        f"{path}: {why}; a checkpoint must hold tensors only: save its state_dict (or model.safetensors) from a copy "
        "you trust, and point the config at that file"
    )


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"{path} is missing: a scGPT model folder holds args.json, vocab.json and best_model.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickle errors of many kinds: name the file)
        raise InputError(safe_load_refusal(path, exc)) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a state dict (parameter name -> tensor), got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DistributedDataParallel prefix


def load_scgpt_checkpoint(
    folder,
    *,
    n_classes: int,
    attention: str = "full",
    attention_config: dict | None = None,
    gene_names=None,
    **overrides,
) -> tuple[ScGPTClassifier, LoadReport]:
    """Build a :class:`ScGPTClassifier` from a scGPT model folder.

    Parameters
    ----------
    folder
        Holds ``args.json`` (``embsize``, ``nheads``, ``d_hid``, ``nlayers``, ``n_layers_cls``,
        ``dropout``, ``input_emb_style``, ``n_bins``, ``pre_norm``), ``vocab.json`` (token -> id;
        ``<pad>``, ``<cls>``, ``<eoc>`` appended when absent, as scGPT's loaders do) and
        ``best_model.pt`` (a state dict, read with ``weights_only=True``).
    n_classes
        Classes of the task. A ``cls_decoder`` in the checkpoint loads when its size matches,
        otherwise the head keeps its initialisation (reported in ``missing`` and ``notes``).
    attention, attention_config
        The kernel swapped in (any registered one).
    gene_names
        The dataset's genes in ``var_names`` order: gene g's embedding is the vocabulary row of
        ``gene_names[g]``. None: every non-special vocabulary token, in id order.
    overrides
        Further :class:`ScGPTConfig` fields (``dropout``, ``cell_embedding``).
    """
    folder = Path(folder)
    args = _read_json(folder / "args.json")
    vocab = _read_json(folder / "vocab.json")
    state = _load_state(folder / "best_model.pt")
    for token in ("<pad>", "<cls>", "<eoc>"):  # scGPT's GeneVocab.append_token
        vocab.setdefault(token, len(vocab))
    if args.get("pre_norm", False):
        raise InputError(
            f"{folder / 'args.json'}: pre_norm=true checkpoints are not supported (scGPT's pre-norm layer normalises "
            "the residual stream itself, unlike the standard pre-LN layer here); released models use post-norm"
        )
    for key in ("embsize", "nheads", "d_hid", "nlayers"):
        if key not in args:
            raise InputError(
                f"{folder / 'args.json'}: key {key!r} missing (scGPT writes embsize, nheads, d_hid, nlayers)"
            )
    style = args.get("input_emb_style", "continuous")
    if style not in ("continuous", "category"):
        raise InputError(f"{folder / 'args.json'}: input_emb_style {style!r} is not supported (continuous or category)")
    n_bins = int(args.get("n_bins", 51))
    if style == "category" and "value_encoder.embedding.weight" in state:
        n_bins = state["value_encoder.embedding.weight"].shape[0] - 2  # n_input_bins = n_bins + 2
    if "encoder.embedding.weight" not in state:
        raise InputError(
            f"{folder / 'best_model.pt'}: no 'encoder.embedding.weight' (is this a scGPT TransformerModel state dict?)"
        )

    report = LoadReport()
    genes, rows = _gene_rows(vocab, gene_names, pad=args.get("pad_token", "<pad>"), cls="<cls>", report=report)
    cfg = ScGPTConfig(
        n_genes=len(genes),
        n_classes=n_classes,
        d_model=int(args["embsize"]),
        n_layers=int(args["nlayers"]),
        n_heads=int(args["nheads"]),
        d_hidden=int(args["d_hid"]),
        n_bins=n_bins,
        dropout=float(args.get("dropout", 0.2)),
        value_encoding=style,
        norm_scheme="post",
        activation="relu",
        n_layers_cls=int(args.get("n_layers_cls", 3)),
        attention=attention,
        attention_config=dict(attention_config or {}),
        **{"cell_embedding": "cls", **overrides},  # scGPT's default cell_emb_style
    )
    model = ScGPTClassifier(cfg)
    ours = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = scgpt_key(key)
        if target is None:
            (report.ignored if SCGPT_IGNORED.match(key) else report.unexpected).append(key)
        elif target not in ours:
            report.unexpected.append(key)  # e.g. a layer beyond nlayers
        elif target == "encoder.embedding.weight":
            new_state[target] = _gather_rows(ours[target], value, rows)
        elif target.startswith("cls_decoder.") and value.shape != ours[target].shape:
            report.ignored.append(key)
            report.notes.append(
                f"{key}: shape {tuple(value.shape)} does not fit a {n_classes}-class head; the "
                "head keeps its initialisation"
            )
        else:
            new_state[target] = value
    _finish(model, new_state, report)
    return model, report


# ---------------------------------------------------------------------------------------------
# Geneformer (Hugging Face BERT)

# BertModel key -> ours, per layer; the embeddings are handled separately (token reindexing,
# token-type-0 vector folded into the position embeddings).
_BERT_LAYER = {
    "attention.output.dense": "self_attn.out",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "linear1",
    "output.dense": "linear2",
    "output.LayerNorm": "norm2",
}
BERT_HEADS = ("cls.", "classifier.")  # MLM / NSP (BertForPreTraining) and classification heads of the wrapper classes


def _token_dictionary(token_dictionary) -> dict[str, int] | None:
    if token_dictionary is None or isinstance(token_dictionary, dict):
        return token_dictionary
    path = Path(token_dictionary)
    if path.suffix == ".pkl":
        raise InputError(
            f"{path}: a pickle can run code when read and is not loaded here; if you trust it, convert it once "
            "(json.dump(pickle.load(f), g)) and pass the .json, or pass the dict itself"
        )
    return {str(k): int(v) for k, v in _read_json(path).items()}


def load_geneformer_checkpoint(
    folder,
    *,
    n_classes: int,
    attention: str = "full",
    attention_config: dict | None = None,
    gene_names=None,
    token_dictionary=None,
    **overrides,
) -> tuple[GeneformerClassifier, LoadReport]:
    """Build a :class:`GeneformerClassifier` from a Hugging Face BERT folder (local files only).

    Parameters
    ----------
    folder
        ``config.json`` and the weights (``model.safetensors`` or ``pytorch_model.bin``) of a
        ``BertModel``, ``BertForMaskedLM`` (Geneformer's pretrained model) or
        ``BertForSequenceClassification``; read with ``transformers.BertModel.from_pretrained``.
    n_classes
        Classes of the task; the classifier keeps its initialisation.
    attention, attention_config
        The kernel swapped in.
    gene_names, token_dictionary
        Both or neither. ``token_dictionary`` maps token names to ids (Geneformer's
        ``token_dictionary.pkl``, converted to JSON or passed as a dict; Ensembl IDs -> ids with
        ``<pad>``, ``<mask>`` and, in V2, ``<cls>``, ``<eos>``); gene g's embedding is then the row of
        ``gene_names[g]``. Neither: the checkpoint's token ids are ours as they are (0 <pad>, 1 <cls>,
        gene g -> g + 2; ``n_genes = vocab_size - 2``).
    overrides
        Further :class:`GeneformerConfig` fields (``dropout``, ``cell_embedding``, ``cls_token``:
        by default ``"prepended"`` for a vocabulary without <cls>, else ``"input"``).
    """
    try:
        from transformers import BertConfig, BertModel
    except ImportError:  # pragma: no cover
        raise InputError("loading a Geneformer checkpoint needs transformers (pip install transformers)") from None
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no config.json; a Hugging Face model folder holds config.json and model weights")
    if (gene_names is None) != (token_dictionary is None):
        raise InputError(
            "pass gene_names and token_dictionary together (or neither, to use the checkpoint's token ids as ours)"
        )
    bert_cfg = BertConfig.from_pretrained(folder, local_files_only=True)
    if getattr(bert_cfg, "position_embedding_type", "absolute") != "absolute" or getattr(bert_cfg, "is_decoder", False):
        raise InputError(
            f"{folder / 'config.json'}: only encoder BERT models with absolute position embeddings are supported"
        )
    if bert_cfg.hidden_act not in ("relu", "gelu"):
        raise InputError(
            f"{folder / 'config.json'}: hidden_act {bert_cfg.hidden_act!r} is not supported (relu or gelu)"
        )
    weights_file = next(
        (folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), folder
    )
    try:
        bert, info = BertModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except Exception as exc:  # noqa: BLE001  (OSError, ValueError, pickle errors of many kinds: name the file, as _load_state)
        raise InputError(safe_load_refusal(weights_file, exc)) from None
    weights = {k: v.detach().float() for k, v in bert.state_dict().items()}
    absent = set(info.get("missing_keys", []))  # BertModel parameters the checkpoint did not hold

    report = LoadReport()
    for key in info.get("unexpected_keys", []):
        (report.ignored if key.startswith(BERT_HEADS) else report.unexpected).append(key)
    vocab = _token_dictionary(token_dictionary)
    if vocab is None:
        n_genes = bert_cfg.vocab_size - N_SPECIAL
        rows = np.arange(bert_cfg.vocab_size)
        report.notes.append(
            "no token dictionary: the checkpoint's token ids are used as ours (0 <pad>, 1 <cls>, gene g -> g + 2)"
        )
        cls_token = "input"
    else:
        genes, rows = _gene_rows(vocab, gene_names, pad="<pad>", cls="<cls>", report=report)
        n_genes = len(genes)
        # A vocabulary without <cls> (Geneformer V1, GenoHoption's model) was pretrained with genes
        # from position 0: prepend the <cls> state after the embeddings, as GenoHoption's adaptor
        # (GenoHoption/Geneformer_adaptor.py); V2 (with <cls>) pretrained it as input token 0.
        cls_token = "input" if "<cls>" in vocab else "prepended"
        report.notes.append(
            f"cls_token {cls_token!r}: the vocabulary {'has' if cls_token == 'input' else 'has no'} <cls> token"
        )
    cfg = GeneformerConfig(
        n_genes=n_genes,
        n_classes=n_classes,
        d_model=bert_cfg.hidden_size,
        n_layers=bert_cfg.num_hidden_layers,
        n_heads=bert_cfg.num_attention_heads,
        d_hidden=bert_cfg.intermediate_size,
        max_position=bert_cfg.max_position_embeddings,
        dropout=bert_cfg.hidden_dropout_prob,
        activation=bert_cfg.hidden_act,
        eps=bert_cfg.layer_norm_eps,
        attention=attention,
        attention_config=dict(attention_config or {}),
        **{"cell_embedding": "cls", "cls_token": cls_token, **overrides},  # BertForSequenceClassification's pooler
    )
    model = GeneformerClassifier(cfg)
    ours = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}

    def take(src: str, dst: str, value: torch.Tensor | None = None) -> None:
        if src in absent:
            report.notes.append(f"{src} is not in the checkpoint: {dst} keeps its initialisation")
            return
        new_state[dst] = weights[src] if value is None else value

    new_state["token_emb.weight"] = _gather_rows(
        ours["token_emb.weight"], weights["embeddings.word_embeddings.weight"], rows
    )
    # BERT adds token_type_embeddings[token_type_ids = 0] to every token: fold it into the positions
    take(
        "embeddings.position_embeddings.weight",
        "pos_emb.weight",
        weights["embeddings.position_embeddings.weight"] + weights["embeddings.token_type_embeddings.weight"][0],
    )
    if bert_cfg.type_vocab_size > 1:
        report.notes.append("token_type_embeddings rows other than 0 are unused (Geneformer uses one token type)")
    take("embeddings.LayerNorm.weight", "emb_norm.weight")
    take("embeddings.LayerNorm.bias", "emb_norm.bias")
    for i in range(bert_cfg.num_hidden_layers):
        pre, ours_pre = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        for part in ("weight", "bias"):
            qkv = [pre + f"attention.self.{n}.{part}" for n in ("query", "key", "value")]
            if not absent.intersection(qkv):
                new_state[ours_pre + f"self_attn.qkv.{part}"] = torch.cat(
                    [weights[k] for k in qkv]
                )  # (three h d) packing
            for src, dst in _BERT_LAYER.items():
                take(pre + f"{src}.{part}", ours_pre + f"{dst}.{part}")
    take("pooler.dense.weight", "pooler.weight")
    take("pooler.dense.bias", "pooler.bias")
    _finish(model, new_state, report)
    return model, report
