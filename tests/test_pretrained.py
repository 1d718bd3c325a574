"""Pretrained checkpoints in the official layouts, written here in miniature, load into our backbones.

- Geneformer: a tiny ``transformers.BertModel`` saved with ``save_pretrained``; with ``full``
  attention our Geneformer-style encoder reproduces its hidden states to 1e-5.
- scGPT: a state dict with the official key names and shapes (``TransformerModel`` with the
  flash-attn layer: packed ``Wqkv``), built by hand; it loads with no missing or unexpected key, and
  reproduces a reference forward built from torch's ``nn.TransformerEncoderLayer`` (scGPT's
  non-flash path) on the same weights.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from scfmbench import InputError
from scfmbench.models.pretrained import load_geneformer_checkpoint, load_scgpt_checkpoint, scgpt_key
from scfmbench.models.tokenize import CLS_ID, N_SPECIAL, PAD_ID, TokenizedCells

transformers = pytest.importorskip("transformers")

E, HEADS, HID, LAYERS = 16, 2, 32, 2


def cells_from(gene_ids: list[list[int]], value_ids: list[list[int]] | None = None) -> TokenizedCells:
    """Right-padded token rows (CLS first) as TokenizedCells."""
    L = max(len(r) for r in gene_ids)
    g = torch.full((len(gene_ids), L), PAD_ID, dtype=torch.long)
    v = torch.zeros_like(g)
    for i, r in enumerate(gene_ids):
        g[i, : len(r)] = torch.tensor(r)
        if value_ids is not None:
            v[i, : len(r)] = torch.tensor(value_ids[i])
    return TokenizedCells(g, v, g == PAD_ID)


# ---------------------------------------------------------------------------------------------
# Geneformer (Hugging Face BERT)


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=12,
        hidden_size=E,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=HID,
        hidden_act="relu",
        max_position_embeddings=32,
        hidden_dropout_prob=0.02,
        attention_probs_dropout_prob=0.02,
        pad_token_id=0,
    )
    bert = transformers.BertModel(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so that a mis-mapped tensor shows
        for name, p in bert.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("geneformer")
    bert.save_pretrained(folder)
    return folder, bert


@pytest.mark.parametrize("attention", ["full", "genohoption-p", "longformer", "performer"])
def test_geneformer_checkpoint_loads_with_any_kernel(bert_folder, attention):
    folder, _ = bert_folder
    model, report = load_geneformer_checkpoint(folder, n_classes=3, attention=attention)
    assert report.unexpected == [] and report.missing == ["classifier.bias", "classifier.weight"]
    assert (
        model.cfg.n_genes == 10
        and model.cfg.activation == "relu"
        and model.cfg.eps == 1e-12
        and model.cfg.attention == attention
    )


def test_geneformer_checkpoint_reproduces_bert_hidden_states(bert_folder):
    folder, bert = bert_folder
    model, _ = load_geneformer_checkpoint(folder, n_classes=3, attention="full")
    cells = cells_from([[CLS_ID, 5, 3, 9, 2, 11], [CLS_ID, 4, 7, 2], [CLS_ID, 10]])  # ranked genes, padded
    model.eval()
    with torch.no_grad():
        ours = model.hidden_states(cells)
        ref = bert(input_ids=cells.gene_ids, attention_mask=(~cells.padding).long()).last_hidden_state
    real = ~cells.padding
    assert (ours[real] - ref[real]).abs().max() < 1e-5
    assert ref[real].abs().max() > 0.5  # the comparison is not between two near-zero tensors


def test_geneformer_token_dictionary_reindexes_embeddings(bert_folder, tmp_path):
    folder, bert = bert_folder
    vocab = {"<pad>": 0, "<mask>": 1, **{f"ENSG{i}": i for i in range(2, 12)}}  # Geneformer V1: no <cls>
    (tmp_path / "tokens.json").write_text(json.dumps(vocab))
    model, report = load_geneformer_checkpoint(
        folder, n_classes=2, gene_names=["ENSG7", "ENSG3", "NOVEL"], token_dictionary=tmp_path / "tokens.json"
    )
    word = bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(model.token_emb.weight[N_SPECIAL + 0], word[7])
    torch.testing.assert_close(model.token_emb.weight[N_SPECIAL + 1], word[3])
    torch.testing.assert_close(model.token_emb.weight[PAD_ID], word[0])
    assert report.genes_missing == ["NOVEL"] and any("<cls>" in n for n in report.notes)
    with pytest.raises(InputError, match="pickle"):
        load_geneformer_checkpoint(
            folder, n_classes=2, gene_names=["A"], token_dictionary=tmp_path / "token_dictionary.pkl"
        )
    with pytest.raises(InputError, match="together"):
        load_geneformer_checkpoint(folder, n_classes=2, gene_names=["A"])


def test_geneformer_v1_vocabulary_prepends_cls_as_genohoptions_adaptor(bert_folder, tmp_path):
    """A V1 vocabulary (no <cls>): genes keep the positions 0..n-1 they were pretrained with and the
    <cls> state is the mean of the embedded genes, prepended after the embedding layer, as
    GenoHoption's Geneformer_adaptor.py; the reference runs Hugging Face's own BERT modules."""
    folder, bert = bert_folder
    vocab = {"<pad>": 0, "<mask>": 1, **{f"ENSG{i}": i for i in range(2, 12)}}  # gene g -> id g + 2, as ours
    (tmp_path / "tokens.json").write_text(json.dumps(vocab))
    model, report = load_geneformer_checkpoint(
        folder, n_classes=3, gene_names=[f"ENSG{i}" for i in range(2, 12)], token_dictionary=tmp_path / "tokens.json"
    )
    assert model.cfg.cls_token == "prepended" and any("cls_token" in n for n in report.notes)
    cells = cells_from([[CLS_ID, 5, 3, 9, 2, 11], [CLS_ID, 4, 7, 2], [CLS_ID, 10]])
    model.eval()
    with torch.no_grad():
        ours = model.hidden_states(cells)
        genes, real = cells.gene_ids[:, 1:], (~cells.padding[:, 1:]).float()
        emb = bert.embeddings(input_ids=genes)  # positions 0..n-1
        cls = (emb * real[..., None]).sum(1) / real.sum(1, keepdim=True)
        x = torch.cat([cls[:, None], emb], 1)
        mask = torch.cat([torch.ones(len(genes), 1), real], 1)
        ext = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min  # BERT's additive padding mask
        ref = x
        for layer in bert.encoder.layer:
            out = layer(ref, attention_mask=ext)
            ref = out[0] if isinstance(out, tuple) else out
    keep = ~cells.padding
    assert (ours[keep] - ref[keep]).abs().max() < 1e-5
    assert ref[keep].abs().max() > 0.5
    # the V2 layout (a <cls> in the vocabulary) keeps <cls> as input token 0
    (tmp_path / "v2.json").write_text(json.dumps({**vocab, "<cls>": 1}))
    v2, _ = load_geneformer_checkpoint(folder, n_classes=3, gene_names=["ENSG2"], token_dictionary=tmp_path / "v2.json")
    assert v2.cfg.cls_token == "input"


# ---------------------------------------------------------------------------------------------
# scGPT


N_GENES, N_BINS, N_CLS, N_LAYERS_CLS = 6, 11, 3, 3


def official_scgpt_state(*, flash: bool = True, n_cls: int = N_CLS) -> dict[str, torch.Tensor]:
    """scGPT TransformerModel state dict (continuous values, flash layers, cls + expression decoders)."""
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return 0.3 * torch.randn(*shape, generator=g)

    ntoken = N_GENES + 3  # genes + <pad>, <cls>, <eoc>
    s = {
        "encoder.embedding.weight": t(ntoken, E),
        "encoder.enc_norm.weight": 1 + t(E),
        "encoder.enc_norm.bias": t(E),
        "value_encoder.linear1.weight": t(E, 1),
        "value_encoder.linear1.bias": t(E),
        "value_encoder.linear2.weight": t(E, E),
        "value_encoder.linear2.bias": t(E),
        "value_encoder.norm.weight": 1 + t(E),
        "value_encoder.norm.bias": t(E),
    }
    for i in range(LAYERS):
        p = f"transformer_encoder.layers.{i}."
        if flash:
            s[p + "self_attn.Wqkv.weight"], s[p + "self_attn.Wqkv.bias"] = t(3 * E, E), t(3 * E)
        else:
            s[p + "self_attn.in_proj_weight"], s[p + "self_attn.in_proj_bias"] = t(3 * E, E), t(3 * E)
        s[p + "self_attn.out_proj.weight"], s[p + "self_attn.out_proj.bias"] = t(E, E), t(E)
        s[p + "linear1.weight"], s[p + "linear1.bias"] = t(HID, E), t(HID)
        s[p + "linear2.weight"], s[p + "linear2.bias"] = t(E, HID), t(E)
        for n in ("norm1", "norm2"):
            s[p + n + ".weight"], s[p + n + ".bias"] = 1 + t(E), t(E)
    for j in (0, 2, 4):  # ExprDecoder: Linear, LeakyReLU, Linear, LeakyReLU, Linear
        s[f"decoder.fc.{j}.weight"], s[f"decoder.fc.{j}.bias"] = t(1 if j == 4 else E, E), t(1 if j == 4 else E)
    for j in range(N_LAYERS_CLS - 1):  # ClsDecoder: (Linear, ReLU, LayerNorm) x 2, out_layer
        s[f"cls_decoder._decoder.{3 * j}.weight"], s[f"cls_decoder._decoder.{3 * j}.bias"] = t(E, E), t(E)
        s[f"cls_decoder._decoder.{3 * j + 2}.weight"], s[f"cls_decoder._decoder.{3 * j + 2}.bias"] = 1 + t(E), t(E)
    s["cls_decoder.out_layer.weight"], s["cls_decoder.out_layer.bias"] = t(n_cls, E), t(n_cls)
    return s


def write_scgpt_folder(folder, state, *, vocab_order=None):
    genes = vocab_order or [f"G{i}" for i in range(N_GENES)]
    vocab = {g: i for i, g in enumerate(genes)} | {"<pad>": N_GENES, "<cls>": N_GENES + 1, "<eoc>": N_GENES + 2}
    args = {
        "embsize": E,
        "nheads": HEADS,
        "d_hid": HID,
        "nlayers": LAYERS,
        "n_layers_cls": N_LAYERS_CLS,
        "dropout": 0.2,
        "input_emb_style": "continuous",
        "n_bins": N_BINS,
        "pad_token": "<pad>",
        "pad_value": -2,
        "fast_transformer": True,
    }
    folder.mkdir(exist_ok=True)
    (folder / "args.json").write_text(json.dumps(args))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    torch.save(state, folder / "best_model.pt")
    return vocab


def reference_scgpt(
    state, vocab, gene_ids_vocab: torch.Tensor, values: torch.Tensor, padding: torch.Tensor
) -> torch.Tensor:
    """scGPT's forward on its non-flash path: GeneEncoder + ContinuousValueEncoder, then
    ``nn.TransformerEncoder(nn.TransformerEncoderLayer(d, h, d_hid, batch_first=True))`` (post-norm, ReLU)."""
    emb = nn.functional.embedding(gene_ids_vocab, state["encoder.embedding.weight"])
    x = nn.functional.layer_norm(emb, (E,), state["encoder.enc_norm.weight"], state["encoder.enc_norm.bias"])
    v = values.float().unsqueeze(-1)
    v = nn.functional.linear(
        torch.relu(nn.functional.linear(v, state["value_encoder.linear1.weight"], state["value_encoder.linear1.bias"])),
        state["value_encoder.linear2.weight"],
        state["value_encoder.linear2.bias"],
    )
    x = x + nn.functional.layer_norm(v, (E,), state["value_encoder.norm.weight"], state["value_encoder.norm.bias"])
    layer = nn.TransformerEncoderLayer(E, HEADS, HID, dropout=0.0, batch_first=True)
    enc = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False).eval()
    renamed = {
        k.removeprefix("transformer_encoder.").replace("self_attn.Wqkv.", "self_attn.in_proj_"): v
        for k, v in state.items()
        if k.startswith("transformer_encoder.")
    }
    enc.load_state_dict(renamed)
    with torch.no_grad():
        return enc(x, src_key_padding_mask=padding)


def test_scgpt_state_dict_loads_with_no_missing_or_unexpected_keys(tmp_path):
    state = official_scgpt_state()
    vocab = write_scgpt_folder(tmp_path / "m", state)
    model, report = load_scgpt_checkpoint(tmp_path / "m", n_classes=N_CLS)
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.ignored) == sorted(k for k in state if k.startswith("decoder."))
    assert model.cfg.value_encoding == "continuous" and model.cfg.norm_scheme == "post" and model.cfg.n_genes == N_GENES
    # gene g is our token g + 2 and the vocabulary's row vocab["G{g}"]; <pad>/<cls> map to theirs
    table = state["encoder.embedding.weight"]
    torch.testing.assert_close(model.encoder.embedding.weight[N_SPECIAL + 4], table[vocab["G4"]])
    torch.testing.assert_close(model.encoder.embedding.weight[CLS_ID], table[vocab["<cls>"]])

    # same forward as scGPT's (torch TransformerEncoderLayer path) on the same weights
    genes = [[CLS_ID, 2, 5, 7, 3], [CLS_ID, 4, 6]]
    values = [[0, 3, 10, 1, 5], [0, 7, 2]]
    cells = cells_from(genes, values)
    to_vocab = torch.tensor([vocab["<pad>"], vocab["<cls>"]] + [vocab[f"G{g}"] for g in range(N_GENES)])
    ref = reference_scgpt(state, vocab, to_vocab[cells.gene_ids], cells.value_ids, cells.padding)
    model.eval()
    with torch.no_grad():
        ours = model.hidden_states(cells)
        logits = model(cells)
    real = ~cells.padding
    assert (ours[real] - ref[real]).abs().max() < 1e-5
    head = nn.Sequential(
        nn.Linear(E, E), nn.ReLU(), nn.LayerNorm(E), nn.Linear(E, E), nn.ReLU(), nn.LayerNorm(E), nn.Linear(E, N_CLS)
    )
    head.load_state_dict(
        {
            k.removeprefix("cls_decoder._decoder.").replace("cls_decoder.out_layer", "6"): v
            for k, v in state.items()
            if k.startswith("cls_decoder.")
        }
    )
    torch.testing.assert_close(logits, head(ref[:, 0]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["genohoption-p", "performer", "longformer"])
def test_scgpt_checkpoint_loads_with_another_kernel(tmp_path, attention):
    write_scgpt_folder(tmp_path / "m", official_scgpt_state(flash=False))  # nn.MultiheadAttention naming
    model, report = load_scgpt_checkpoint(tmp_path / "m", n_classes=N_CLS, attention=attention)
    assert report.missing == [] and report.unexpected == []
    assert model.cfg.attention == attention


def test_scgpt_loader_reports_head_mismatch_genes_and_junk(tmp_path):
    state = official_scgpt_state(n_cls=5) | {
        "transformer_encoder.layers.0.self_attn.cross_attn.in_proj_weight": torch.zeros(3 * E, E),
        "mystery.weight": torch.zeros(2),
    }
    write_scgpt_folder(tmp_path / "m", state)
    model, report = load_scgpt_checkpoint(tmp_path / "m", n_classes=N_CLS, gene_names=["G3", "G1", "NEW"])
    assert report.unexpected == ["mystery.weight"]
    assert "transformer_encoder.layers.0.self_attn.cross_attn.in_proj_weight" in report.ignored
    assert report.missing == ["cls_decoder.out_layer.bias", "cls_decoder.out_layer.weight"]
    assert report.genes_missing == ["NEW"] and model.cfg.n_genes == 3
    torch.testing.assert_close(model.encoder.embedding.weight[N_SPECIAL + 1], state["encoder.embedding.weight"][1])


def test_scgpt_key_names():
    assert (
        scgpt_key("transformer_encoder.layers.3.self_attn._impl.Wqkv.weight")
        == "transformer_encoder.layers.3.self_attn.qkv.weight"
    )
    assert (
        scgpt_key("transformer_encoder.layers.0.self_attn.out_proj.bias")
        == "transformer_encoder.layers.0.self_attn.out.bias"
    )
    assert scgpt_key("decoder.fc.0.weight") is None


def test_scgpt_loader_errors(tmp_path):
    with pytest.raises(InputError, match="args.json"):
        load_scgpt_checkpoint(tmp_path, n_classes=2)
    write_scgpt_folder(tmp_path / "m", official_scgpt_state())
    args = json.loads((tmp_path / "m" / "args.json").read_text())
    (tmp_path / "m" / "args.json").write_text(json.dumps(args | {"pre_norm": True}))
    with pytest.raises(InputError, match="pre_norm"):
        load_scgpt_checkpoint(tmp_path / "m", n_classes=2)
    torch.save({"not": "tensors"}, tmp_path / "m" / "best_model.pt")
    with pytest.raises(InputError, match="state dict"):
        load_scgpt_checkpoint(tmp_path / "m", n_classes=2)


# ---------------------------------------------------------------------------------------------
# scFoundation: a models.ckpt with the official parameter names (fixture read off the official model)

SCF_FIXTURE = __import__("pathlib").Path(__file__).parent / "fixtures" / "scfoundation" / "official_state_dict.tsv"
# the miniature config the fixture was taken at (its header), in models.ckpt's layout
SCF_CONFIG = {
    "model": "mae_autobin",
    "model_config": {
        "mae_autobin": {
            "encoder": {"hidden_dim": 16, "depth": 2, "heads": 2, "module_type": "transformer"},
            "decoder": {"hidden_dim": 8, "depth": 2, "heads": 2, "dim_head": 4, "module_type": "performer"},
            "seq_len": 12,
            "bin_num": 5,
            "bin_alpha": 1.0,
            "pad_token_id": 103,
            "mask_token_id": 102,
            "n_class": 104,
        }
    },
    "dataset_config": {"rnaseq": {}},
}


def official_scfoundation_state() -> dict[str, torch.Tensor]:
    """Random tensors under the official names and shapes, ``model.``-prefixed as models.ckpt has them."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for line in SCF_FIXTURE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split("\t")
        dims = tuple(int(x) for x in shape.split("x") if x)
        state["model." + name] = torch.tensor(7) if not dims else torch.randn(dims, generator=gen)
    return state


def test_scfoundation_fixture_is_the_official_layout():
    names = [k.removeprefix("model.") for k in official_scfoundation_state()]
    # 14 embedding and head tensors + 2 x 12 per encoder layer + 2 (norm) + 1 counter
    # + 2 x 17 per Performer layer + 2 (norm)
    assert len(names) == 77 and "encoder.transformer_encoder.1.self_attn.in_proj_weight" in names
    assert "decoder.performer.calls_since_last_redraw" in names and not any("proj_updater" in n for n in names)


def test_scfoundation_official_checkpoint_loads_with_no_missing_or_unexpected_keys(tmp_path):
    from scfmbench.models.scfoundation import load_scfoundation_checkpoint

    state = official_scfoundation_state()
    torch.save({"gene": {"config": SCF_CONFIG, "state_dict": state}}, tmp_path / "models.ckpt")
    model, report = load_scfoundation_checkpoint(tmp_path / "models.ckpt", key="gene", n_classes=4)
    assert report.missing == ["classifier.bias", "classifier.weight"]  # the fresh head only
    assert report.unexpected == []
    own = model.state_dict()
    pairs = {
        "encoder.transformer_encoder.1.self_attn.in_proj_weight": "encoder.layers.1.self_attn.qkv.weight",
        "encoder.transformer_encoder.0.self_attn.out_proj.bias": "encoder.layers.0.self_attn.out.bias",
        "encoder.transformer_encoder.1.linear2.weight": "encoder.layers.1.linear2.weight",
        "encoder.norm.weight": "encoder_norm.weight",
        "token_emb.emb_mask.weight": "token_emb.emb_mask.weight",
        "decoder.performer.net.layers.1.0.fn.to_q.weight": "decoder.performer.net.layers.1.0.fn.to_q.weight",
        "decoder.performer.net.layers.0.0.fn.to_v.bias": "decoder.performer.net.layers.0.0.fn.to_v.bias",
        "decoder.performer.net.layers.1.0.fn.fast_attention.projection_matrix": (
            "decoder.performer.net.layers.1.0.fn.fast_attention.projection_matrix"
        ),
        "decoder.performer.net.layers.0.1.fn.fn.w1.weight": "decoder.performer.net.layers.0.1.fn.fn.w1.weight",
        "decoder.performer.calls_since_last_redraw": "decoder.performer.proj_updater.calls_since_last_redraw",
        "to_final.weight": "to_final.weight",
    }
    for official, ours in pairs.items():
        assert torch.equal(own[ours], state["model." + official]), official
    # performer-pytorch's alias of the decoder holds the same loaded tensors
    assert torch.equal(
        own["decoder.performer.proj_updater.instance.layers.1.0.fn.to_q.weight"],
        state["model.decoder.performer.net.layers.1.0.fn.to_q.weight"],
    )
    with pytest.raises(InputError, match="'gene', 'cell' and 'rde'"):
        load_scfoundation_checkpoint(tmp_path / "models.ckpt", key="rde", n_classes=4)


def test_scfoundation_loader_lists_missing_and_unexpected(tmp_path):
    from scfmbench.models.scfoundation import load_scfoundation_checkpoint

    state = official_scfoundation_state()
    del state["model.decoder.performer.net.layers.0.0.fn.to_k.weight"]
    state["model.something_else.weight"] = torch.zeros(2)
    torch.save({"gene": {"config": SCF_CONFIG, "state_dict": state}}, tmp_path / "models.ckpt")
    _, report = load_scfoundation_checkpoint(tmp_path / "models.ckpt", key="gene", n_classes=4)
    assert report.missing == ["classifier.bias", "classifier.weight", "decoder.performer.net.layers.0.0.fn.to_k.weight"]
    assert report.unexpected == ["something_else.weight"]
