"""Bring-your-own-data defects (issue 15): each test here failed on the code before its fix.

Stale prepared data after editing a user file, labels-optional datasets, empty splits, test cell
types absent from training, log-scale input, cross-species gene graphs, the quality check over every
task's controls, zero-count cells, config keys named in error messages, and unreadable Geneformer
checkpoints.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO

# --------------------------------------------------------------------------------------------------
# 9. Every config key an error message names exists in the schema
# --------------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"^(<[^>]*>|\{[^}]*\})$")


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node


def schema_has_key(schema: dict, key: str, node: dict | None = None) -> bool:
    """Whether a dotted config key (``datasets.<name>.path``; ``<...>`` / ``{...}`` stand for any
    name: any named property or an additional one) is a key of the schema."""
    node = _resolve(schema, schema if node is None else node)
    part, _, rest = key.partition(".")
    props = node.get("properties", {})
    extra = node.get("additionalProperties")
    if _PLACEHOLDER.match(part):
        branches = list(props.values()) + ([extra] if isinstance(extra, dict) else [])
    else:
        branches = [props[part]] if part in props else ([extra] if isinstance(extra, dict) else [])
    return any(not rest or schema_has_key(schema, rest, b) for b in branches)


def _message_strings(tree: ast.AST):
    """String constants and f-strings (with ``{}`` for each formatted value) inside ``raise``
    statements and warning/log calls: the messages a user reads."""

    def text(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value if isinstance(v, ast.Constant) else "{x}" for v in node.values)
        return None

    def strings(root):
        for node in ast.walk(root):
            t = text(node)
            if t is not None:
                yield t

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            yield from strings(node.exc)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("warn", "warning", "error")
        ):
            yield from strings(node)


def config_keys_in_messages() -> dict[str, list[str]]:
    """Dotted config keys (starting with a top-level schema key) named in messages: key -> files."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    top = "|".join(sorted(schema["properties"], key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w./<{{-])(?:{top})(?:\.(?:[A-Za-z0-9_]+|<[^>]*>|\{{[^}}]*\}}))+")
    found: dict[str, list[str]] = {}
    files = sorted((REPO / "src" / "scfmbench").rglob("*.py")) + sorted((REPO / "workflow" / "scripts").glob("*.py"))
    for path in files:
        for message in _message_strings(ast.parse(path.read_text())):
            for m in pattern.finditer(message):
                found.setdefault(m.group(0), []).append(str(path.relative_to(REPO)))
    return found


def test_schema_key_resolution():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema_has_key(schema, "datasets.<name>.min_library_size")
    assert schema_has_key(schema, "datasets.{x}.recover_counts")
    assert schema_has_key(schema, "params.scgpt.checkpoint")
    assert not schema_has_key(schema, "imputation.min_library_size")  # the key issue 15 found in an error
    assert not schema_has_key(schema, "datasets.<name>.no_such_key")


def test_every_config_key_named_in_an_error_exists():
    found = config_keys_in_messages()
    assert len(found) >= 15, sorted(found)  # the scan sees the messages (not vacuous)
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    wrong = {k: files for k, files in found.items() if not schema_has_key(schema, k)}
    assert not wrong, f"error messages name config keys the schema does not have: {wrong}"


# --------------------------------------------------------------------------------------------------
# 10. A Geneformer checkpoint that fails weights_only loading is an error naming the file
# --------------------------------------------------------------------------------------------------


class _Payload:
    """Pickles to a call of ``print``: what a malicious checkpoint would do with os.system."""

    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_geneformer_checkpoint_with_pickled_code_names_the_file(tmp_path, capsys):
    import pickle

    from scfmbench import InputError
    from scfmbench.models.pretrained import load_geneformer_checkpoint

    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=12,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        hidden_act="relu",
        max_position_embeddings=16,
    )
    cfg.save_pretrained(tmp_path)
    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(pickle.dumps({"embeddings.word_embeddings.weight": _Payload()}, protocol=2))
    with pytest.raises(InputError) as err:
        load_geneformer_checkpoint(tmp_path, n_classes=2)
    assert str(weights) in str(err.value) and "weights_only" in str(err.value)
    assert "pickled code ran" not in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# Helpers: a user's .h5ad
# --------------------------------------------------------------------------------------------------


def _counts(n_cells=60, n_genes=30, seed=0):
    import numpy as np

    return np.random.default_rng(seed).poisson(4, (n_cells, n_genes)).astype(np.float32)


def _user_h5ad(path: Path, counts=None, *, genes=None, **obs) -> Path:
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    counts = _counts() if counts is None else counts
    n, g = counts.shape
    genes = [f"GENE{j}" for j in range(g)] if genes is None else genes
    ad.AnnData(
        X=sp.csr_matrix(counts), obs=pd.DataFrame(obs, index=[f"c{i}" for i in range(n)]), var=pd.DataFrame(index=genes)
    ).write_h5ad(path)
    return path


def _validated(datasets: dict, **blocks) -> dict:
    from scfmbench.config import validate_config

    return validate_config({"datasets": datasets, **blocks}, REPO / "workflow" / "schemas" / "config.schema.yaml")


# --------------------------------------------------------------------------------------------------
# 2. Labels only where a task uses them
# --------------------------------------------------------------------------------------------------


def test_imputation_only_dataset_needs_no_labels(tmp_path):
    from scfmbench.data.loaders import load_dataset
    from scfmbench.data.prepare import prepare_dataset
    from scfmbench.impute.protocol import make_masks

    path = _user_h5ad(tmp_path / "unlabelled.h5ad")
    cfg = _validated(
        {"mine": {"source": "h5ad", "path": str(path), "label_column": None, "min_library_size": 0}},
        annotation={"datasets": []},
        imputation={"datasets": ["mine"]},
    )["datasets"]["mine"]
    raw = load_dataset("mine", cfg)
    assert "cell_type" not in raw.obs
    prepared = prepare_dataset(raw, seed=0, label_tasks=[])
    assert "cell_type" not in prepared.obs and set(prepared.obs["split"]) == {"train", "valid", "test"}
    masked, _ = make_masks(prepared, seed=0, n_folds=2)
    assert masked.n_obs == prepared.n_obs


def test_tasks_that_need_labels_name_themselves(tmp_path):
    from scfmbench import InputError
    from scfmbench.data.loaders import load_dataset
    from scfmbench.data.prepare import prepare_dataset

    path = _user_h5ad(tmp_path / "unlabelled.h5ad")
    entry = {"mine": {"source": "h5ad", "path": str(path), "label_column": None}}
    with pytest.raises(
        InputError,
        match=(
            r"config key 'annotation.datasets': dataset 'mine' has no cell types \(datasets.mine.label_column is "
            r"null\), but annotation needs them"
        ),
    ):
        _validated(entry, annotation={"datasets": ["mine"]}, imputation={"datasets": []})
    raw = load_dataset("mine", {"source": "h5ad", "path": str(path), "label_column": None})
    with pytest.raises(InputError, match="no cell types .* but annotation uses its labels"):
        prepare_dataset(raw, seed=0, label_tasks=["annotation"])
    # A constant label (what users had to fake) is fine where no task uses labels ...
    one = load_dataset(
        "one",
        {"source": "h5ad", "path": str(_user_h5ad(tmp_path / "one.h5ad", kind=["x"] * 60)), "label_column": "kind"},
    )
    prepare_dataset(one, seed=0, label_tasks=[])
    # ... and an error naming annotation where it does.
    with pytest.raises(InputError, match="annotation needs at least two classes in train"):
        prepare_dataset(one, seed=0, label_tasks=["annotation"])


# --------------------------------------------------------------------------------------------------
# 3. Empty splits are refused at prepare_dataset; no empty predictions file
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, empty", [(["train"] * 60, "0 test"), (["test"] * 60, "0 train")])
def test_empty_split_is_an_error_naming_dataset_column_and_counts(tmp_path, values, empty):
    from scfmbench import InputError
    from scfmbench.data.loaders import load_dataset
    from scfmbench.data.prepare import prepare_dataset

    path = _user_h5ad(tmp_path / "u.h5ad", kind=["a", "b"] * 30, part=values)
    raw = load_dataset("mine", {"source": "h5ad", "path": str(path), "label_column": "kind", "split_column": "part"})
    with pytest.raises(InputError) as err:
        prepare_dataset(raw, seed=0, where="dataset 'mine'", label_tasks=[])
    msg = str(err.value)
    assert "dataset 'mine'" in msg and "split column 'part'" in msg and empty in msg and "cells per split" in msg


def test_no_empty_predictions_file(tmp_path):
    from scfmbench import InputError
    from scfmbench.annotation import write_predictions

    with pytest.raises(InputError, match="no test cell"):
        write_predictions([], [], tmp_path / "predictions.csv")
    assert not (tmp_path / "predictions.csv").exists()


# --------------------------------------------------------------------------------------------------
# 4. Test cell types absent from training
# --------------------------------------------------------------------------------------------------


def test_unseen_test_types_recorded_and_macro_f1_seen(tmp_path):
    import json

    import numpy as np
    from sklearn.metrics import f1_score

    from scfmbench._io import write_h5ad
    from scfmbench.annotation import run_annotation, score_annotation
    from scfmbench.data.loaders import load_dataset
    from scfmbench.data.prepare import prepare_dataset

    # 'c' occurs only in the test split: 10 of the 30 test cells.
    kind = ["a", "b"] * 30 + ["c"] * 10
    part = ["train"] * 40 + ["test"] * 20 + ["test"] * 10
    path = _user_h5ad(tmp_path / "u.h5ad", _counts(70), kind=kind, part=part)
    raw = load_dataset("mine", {"source": "h5ad", "path": str(path), "label_column": "kind", "split_column": "part"})
    prepared = prepare_dataset(raw, seed=0)
    prov = prepared.uns["provenance"]
    assert (
        list(prov["unseen_test_types"]) == ["c"]
        and list(prov["unseen_test_cells"]) == [10]
        and prov["unseen_test_share"] == pytest.approx(1 / 3)
    )
    write_h5ad(prepared, tmp_path / "p.h5ad")
    run_annotation("majority", tmp_path / "p.h5ad", tmp_path / "pred.csv", seed=0, record_path=tmp_path / "run.json")
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["unseen_test_types"] == {"c": 10} and run["unseen_test_share"] == pytest.approx(1 / 3)
    metrics = score_annotation(tmp_path / "p.h5ad", tmp_path / "pred.csv")
    test = prepared.obs["split"] == "test"
    truth = prepared.obs.loc[test, "cell_type"].astype(str).to_numpy()
    pred = np.full(len(truth), "a")  # majority: the most frequent training type ('a' and 'b' tie; the first sorted)
    assert metrics["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro", zero_division=0))
    # over the training classes present (a, b): the unseen 'c' is left out of the average
    assert metrics["macro_f1_seen"] == pytest.approx(
        f1_score(truth, pred, labels=["a", "b"], average="macro", zero_division=0)
    )
    assert metrics["macro_f1_seen"] > metrics["macro_f1"]


# --------------------------------------------------------------------------------------------------
# 5. Log-scale input: recover_counts for h5ad; keys a source ignores are errors
# --------------------------------------------------------------------------------------------------


def test_log_scale_h5ad_recovered_with_recover_counts(tmp_path):
    import numpy as np

    from scfmbench import InputError
    from scfmbench.data.contract import log_normalize
    from scfmbench.data.loaders import load_dataset

    counts = _counts(40, 25)
    counts[:, 0] += 1  # every cell has counts
    logged = log_normalize(counts).toarray()  # what public files hold: log1p(counts per 1e4), float32
    path = _user_h5ad(tmp_path / "log.h5ad", logged, kind=["a", "b"] * 20)
    cfg = {"source": "h5ad", "path": str(path), "label_column": "kind"}
    with pytest.raises(InputError) as err:
        load_dataset("mine", cfg)
    assert "non-integer" in str(err.value) and "datasets.<name>.recover_counts: true" in str(err.value)
    raw = load_dataset("mine", {**cfg, "recover_counts": True})
    np.testing.assert_array_equal(raw.layers["counts"].toarray(), counts)
    assert raw.uns["provenance"]["counts"] == "X (counts recovered from log1p)"
    # values rounded to 2 decimals cannot be inverted: the integer check stops the load
    _user_h5ad(path, np.round(logged, 2), kind=["a", "b"] * 20)
    with pytest.raises(InputError, match="recover_counts: true: counts cannot be recovered"):
        load_dataset("mine", {**cfg, "recover_counts": True})


@pytest.mark.parametrize(
    "entry, key",
    [
        ({"source": "pbmc68k", "recover_counts": True}, "recover_counts"),
        ({"source": "scgpt_ms", "label_column": "celltype"}, "label_column"),
        ({"source": "geo_smajic2022", "split_column": "part"}, "split_column"),
        ({"source": "synthetic", "species": "mouse"}, "species"),
    ],
)
def test_a_key_the_source_ignores_is_an_error(entry, key):
    from scfmbench import InputError

    with pytest.raises(InputError, match=rf"config key 'datasets.d.{key}': source '{entry['source']}' does not read"):
        _validated({"d": entry}, annotation={"datasets": []}, imputation={"datasets": []})


def test_keys_the_sources_read_are_accepted():
    cfg = _validated(
        {
            "a": {"source": "scgpt_ms", "recover_counts": True},
            "b": {"source": "gears_adamson", "label_column": "condition"},
            "c": {"source": "h5ad", "path": "x.h5ad", "recover_counts": True, "species": "mouse"},
            "s": {"source": "synthetic", "synthetic": {"n_cells": 50}},
        },
        annotation={"datasets": []},
        imputation={"datasets": []},
    )
    _validated(
        cfg["datasets"], annotation={"datasets": []}, imputation={"datasets": []}
    )  # validating twice (defaults filled) is no error


# --------------------------------------------------------------------------------------------------
# 8. Cells with zero counts are dropped at prepare_dataset and counted
# --------------------------------------------------------------------------------------------------


def test_zero_count_cells_dropped_and_recorded(tmp_path):
    from scfmbench.data.loaders import load_dataset
    from scfmbench.data.prepare import prepare_dataset

    counts = _counts(60, 20)
    counts[[3, 17, 41]] = 0
    path = _user_h5ad(tmp_path / "z.h5ad", counts, kind=["a", "b", "c"] * 20)
    prepared = prepare_dataset(
        load_dataset("mine", {"source": "h5ad", "path": str(path), "label_column": "kind"}), seed=0
    )
    assert prepared.n_obs == 57 and not {"c3", "c17", "c41"} & set(prepared.obs_names)
    assert prepared.uns["provenance"]["zero_count_cells_dropped"] == 3
    assert (prepared.layers["counts"].sum(axis=1) > 0).all()


# --------------------------------------------------------------------------------------------------
# 1. Editing your own file reruns everything downstream
# --------------------------------------------------------------------------------------------------


def test_local_inputs_list_user_files(tmp_path):
    from scfmbench.data.sources import local_inputs

    h5ad = _user_h5ad(tmp_path / "u.h5ad", kind=["a"] * 60)
    assert local_inputs({"source": "h5ad", "path": str(h5ad)}) == [str(h5ad)]
    folder = tmp_path / "hPancreas"
    (folder / "sub").mkdir(parents=True)
    for name in ("demo_train.h5ad", "sub/demo_test.h5ad", ".DS_Store"):
        (folder / name).write_text("x")
    assert local_inputs({"source": "scgpt_pancreas", "path": str(folder)}) == [
        str(folder / "demo_train.h5ad"),
        str(folder / "sub" / "demo_test.h5ad"),
    ]
    assert local_inputs({"source": "scgpt_pancreas", "path": None}) == []  # manifest downloads: download_inputs
    assert (
        local_inputs({"source": "h5ad", "path": str(tmp_path / "missing.h5ad")}) == []
    )  # the loader's error names the key


@pytest.mark.slow
def test_editing_the_h5ad_reruns_load_and_prepare(tmp_path):
    import os

    from test_workflow import copy_workflow, run

    wd = copy_workflow(tmp_path)
    path = _user_h5ad(wd / "mine.h5ad", kind=["a", "b"] * 30)
    own = {
        "seeds": [0],
        "datasets": {"mine": {"source": "h5ad", "path": "mine.h5ad", "label_column": "kind", "min_library_size": 0}},
        "annotation": {"datasets": ["mine"], "methods": ["majority"]},
        "imputation": {"datasets": ["mine"], "methods": ["none"]},
    }
    (wd / "config" / "own.yaml").write_text(yaml.safe_dump(own))
    target = ("results/data/mine/seed0/prepared.h5ad", "--configfile", "config/own.yaml")
    run(wd, *target)
    assert "Nothing to be done" in run(wd, "-n", *target).stdout
    _user_h5ad(path, _counts(seed=1), kind=["a", "b"] * 30)  # the user fixes the file in place
    os.utime(path, (path.stat().st_atime + 5, path.stat().st_mtime + 5))
    plan = run(wd, "-n", *target).stdout
    assert "rule load_dataset" in plan and "rule prepare_dataset" in plan, plan


# --------------------------------------------------------------------------------------------------
# 6. Cross-species gene graphs are refused; species and exact / case-folded matches in graph_stats
# --------------------------------------------------------------------------------------------------


def test_detect_species():
    from scfmbench.data.species import detect_species

    human = ["SOX17", "GATA1", "TP53", "C1orf112"] + [f"ZNF{i}" for i in range(30)]
    mouse = ["Sox17", "Gata1", "Trp53", "0610005C13Rik"] + [f"Zfp{i}" for i in range(30)]
    assert detect_species(human) == "human" and detect_species(mouse) == "mouse"
    assert (
        detect_species([f"ENSG{i:011d}" for i in range(30)]) == "human"
        and detect_species([f"ENSMUSG{i:011d}" for i in range(30)]) == "mouse"
    )
    assert (
        detect_species(human[:17] + mouse[:17]) == "unknown" and detect_species(["SOX17", "GATA1"]) == "unknown"
    )  # mixed; too few


@pytest.fixture(scope="module")
def mouse_prepared(tmp_path_factory):
    from scfmbench._io import write_h5ad
    from scfmbench.data.loaders import load_dataset
    from scfmbench.data.prepare import prepare_dataset

    raw = load_dataset(
        "mousecells",
        {
            "source": "synthetic",
            "synthetic": {"n_cells": 80, "n_genes": 40, "n_cell_types": 2, "seed": 0, "network": "trrust_mouse"},
        },
    )
    assert raw.uns["provenance"]["species"] == "mouse" and raw.uns["provenance"]["species_from"] == "symbols"
    path = tmp_path_factory.mktemp("mouse") / "prepared.h5ad"
    write_h5ad(prepare_dataset(raw, seed=0), path)
    return path


def _db(name: str, species: str | None) -> dict:
    return {"name": name, "format": "trrust", "sha256": None, "species": species}


def test_mouse_symbols_on_a_human_database_are_refused(mouse_prepared, tmp_path):
    from scfmbench import InputError
    from scfmbench.data.synthetic import vendored_grn_path
    from scfmbench.graphs.workflow import build_graph_file, write_graph_stats

    spec = {"variant": "no_coexpr", "databases": [_db("trrust_human", "human")]}
    with pytest.raises(InputError) as err:
        build_graph_file(mouse_prepared, [vendored_grn_path("trrust_human")], tmp_path / "g.npz", spec=spec, seed=0)
    msg = str(err.value)
    assert (
        "dataset 'mousecells' is mouse (detected from its gene symbols" in msg
        and "database 'trrust_human' in graphs.databases is human" in msg
    )
    assert "datasets.mousecells.species" in msg and not (tmp_path / "g.npz").exists()
    # the mouse database matches as written; a database of unknown species is matched case-insensitively, and says so
    out = tmp_path / "results" / "graphs" / "mousecells" / "seed0" / "no_coexpr.npz"
    spec = {"variant": "no_coexpr", "databases": [_db("trrust_mouse", "mouse"), _db("upper", None)]}
    upper = tmp_path / "upper.tsv"
    rows = [line.split("\t") for line in vendored_grn_path("trrust_mouse").read_text().splitlines()]
    upper.write_text("".join("\t".join([r[0].upper(), r[1].upper(), *r[2:]]) + "\n" for r in rows))
    build_graph_file(mouse_prepared, [vendored_grn_path("trrust_mouse"), upper], out, spec=spec, seed=0)
    write_graph_stats([out], tmp_path / "stats.csv", tmp_path / "stats.md")
    import pandas as pd

    assert pd.read_csv(tmp_path / "stats.csv")["species"].tolist() == ["mouse"]
    from scfmbench.graphs import load_graph

    counts = load_graph(out).match_counts.set_index("database")
    assert (
        counts.loc["trrust_mouse", "genes_exact"] == counts.loc["trrust_mouse", "genes_matched"] > 0
        and counts.loc["trrust_mouse", "genes_folded"] == 0
    )
    assert (
        counts.loc["upper", "genes_exact"] == 0
        and counts.loc["upper", "genes_folded"] == counts.loc["trrust_mouse", "genes_matched"]
    )
    assert "| mousecells | mouse | no_coexpr |" in (tmp_path / "stats.md").read_text()


def test_declared_species_wins(tmp_path):
    from scfmbench.data.loaders import load_dataset

    path = _user_h5ad(tmp_path / "u.h5ad", kind=["a", "b"] * 30)
    raw = load_dataset("mine", {"source": "h5ad", "path": str(path), "label_column": "kind", "species": "mouse"})
    assert raw.uns["provenance"]["species"] == "mouse" and raw.uns["provenance"]["species_from"] == "config"


# --------------------------------------------------------------------------------------------------
# 7. The quality check covers every task's controls
# --------------------------------------------------------------------------------------------------


def _records(rows):
    import pandas as pd

    from scfmbench.results import METRIC_COLUMNS

    return pd.DataFrame(
        [
            dict(zip(["task", "dataset", "method", "seed", "metric", "value"], r), runtime_s=1.0, peak_mem_mb=1.0)
            for r in rows
        ],
        columns=METRIC_COLUMNS,
    )


def test_quality_check_covers_denoising_doublets_and_ceilings():
    from scfmbench.report.quality import quality_checks, quality_markdown

    clean = _records(
        [
            ("annotation", "d", "majority", 0, "macro_f1", 0.2),
            ("annotation", "d", "logreg", 0, "macro_f1", 0.8),
            ("imputation", "s", "none", 0, "mse_truth", 2.0),
            ("imputation", "s", "perfect", 0, "mse_truth", 0.0),
            ("imputation", "s", "magic", 0, "mse_truth", 1.0),
            ("denoising", "s", "none", 0, "poisson", 1.0),
            ("denoising", "s", "magic", 0, "poisson", 0.9),
            ("denoising", "s", "true_rate", 0, "poisson", 0.8),
            ("denoising", "s", "magic", 0, "mse_openproblems", 9.0),
            ("denoising", "s", "none", 0, "mse_openproblems", 1.0),
            ("denoising", "real", "none", 0, "mse_sqrt", 1.0),
            ("denoising", "real", "magic", 0, "mse_sqrt", 0.9),  # no true_rate on real data: no row
            ("doublet", "d", "all_doublet", 0, "doublet_f1", 0.18),
            ("doublet", "d", "schyena", 0, "doublet_f1", 0.5),
        ]
    )
    assert quality_checks(clean, expected=[]).empty
    assert quality_markdown(quality_checks(clean, expected=[])).startswith("All checks passed")
    bad = _records(
        [
            ("denoising", "s", "none", 0, "poisson", 1.0),
            ("denoising", "s", "magic", 0, "poisson", 1.3),  # worse than no denoising
            ("denoising", "t", "none", 0, "mse_log1p", 1.0),
            ("denoising", "t", "true_rate", 0, "mse_log1p", 0.5),
            ("denoising", "t", "leaky", 0, "mse_log1p", 0.4),  # beats the rate
            ("imputation", "s", "perfect", 0, "mse_truth", 0.5),
            ("imputation", "s", "none", 0, "mse_truth", 2.0),
            ("imputation", "s", "leaky", 0, "mse_truth", 0.1),  # beats the truth
            ("doublet", "d", "all_doublet", 0, "doublet_f1", 0.18),
            ("doublet", "d", "schyena", 0, "doublet_f1", 0.1),
            ("doublet", "e", "schyena", 0, "doublet_f1", 0.6),  # its control never ran
        ]
    )
    got = set(zip(*(quality_checks(bad, expected=[])[c] for c in ("check", "task", "dataset", "method"))))
    assert got == {
        ("below control", "denoising", "s", "magic"),
        ("above ceiling", "imputation", "s", "leaky"),
        ("below control", "doublet", "d", "schyena"),
        ("no control", "doublet", "e", "all_doublet"),
        ("above ceiling", "denoising", "t", "leaky"),
    }


def test_quality_check_unseen_types_and_fewshot_controls():
    from scfmbench.report.quality import quality_checks

    m = _records(
        [("annotation", "p", "majority", 0, "accuracy", 0.3), ("annotation", "p-fs0.5", "logreg", 0, "accuracy", 0.2)]
    )
    checks = quality_checks(
        m, expected=[], runs=[{"dataset": "p", "seed": 0, "unseen_test_types": {"c": 10}, "unseen_test_share": 1 / 3}]
    )
    rows = checks.set_index("check")
    assert rows.loc["below control", "dataset"] == "p-fs0.5"  # the few-shot run is held to its base dataset's control
    assert "['c']: 10 test cells (33.3%)" in rows.loc["unseen test types", "detail"]


def test_a_new_task_plugs_in_with_one_entry(monkeypatch):
    from scfmbench.report import quality

    monkeypatch.setattr(quality, "CONTROL_CHECKS", dict(quality.CONTROL_CHECKS))
    m = _records(
        [("perturbation", "d", "mean_outcome", 0, "pearson", 0.4), ("perturbation", "d", "gears", 0, "pearson", 0.3)]
    )
    assert quality.quality_checks(m, expected=[]).empty  # no control registered: nothing compared
    quality.register_control("perturbation", "mean_outcome", ["pearson"])
    assert quality.quality_checks(m, expected=[])[["check", "method"]].values.tolist() == [["below control", "gears"]]


def test_all_doublet_control_sees_the_same_doublets(prepared):
    from scfmbench.metrics import binary_f1
    from scfmbench.schyena.doublets import DOUBLET, all_doublet_control, simulate_doublets

    ids, truth, predicted = all_doublet_control(prepared, seed=3, rate=0.1)
    aug = simulate_doublets(prepared, rate=0.1, seed=3)
    test = (aug.obs["split"] == "test").to_numpy()
    assert list(ids) == list(aug.obs_names[test]) and list(truth) == list(aug.obs["cell_type"].astype(str)[test])
    d, n = int((truth == DOUBLET).sum()), len(truth)
    assert d > 0 and (predicted == DOUBLET).all()
    assert binary_f1(truth == DOUBLET, predicted == DOUBLET) == pytest.approx(2 * d / (n + d))


# --------------------------------------------------------------------------------------------------
# log2(1 + scaled counts) (R objects) and the safe loader's refusals (issue 25, item 6)
# --------------------------------------------------------------------------------------------------


def test_log2_scale_h5ad_recovered_detected_or_declared(tmp_path):
    """Values stored as log2(1 + counts per 1e4) (written here by hand) invert exactly in base 2:
    detected when log_base is null, accepted when declared, refused when declared as 'e'."""
    import numpy as np

    from scfmbench import InputError
    from scfmbench.data.loaders import load_dataset

    counts = _counts(40, 25)
    counts[:, 0] += 1
    log2 = np.log2(1 + counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    path = _user_h5ad(tmp_path / "r.h5ad", log2, kind=["a", "b"] * 20)
    cfg = {"source": "h5ad", "path": str(path), "label_column": "kind"}
    with pytest.raises(InputError) as err:
        load_dataset("mine", cfg)
    assert "log2" in str(err.value) and "recover_counts: true" in str(err.value) and "log_base" in str(err.value)
    for declared in (None, 2):
        raw = load_dataset("mine", {**cfg, "recover_counts": True, "log_base": declared})
        np.testing.assert_array_equal(raw.layers["counts"].toarray(), counts)
        assert raw.uns["provenance"]["counts"] == "X (counts recovered from log2(1 + x))"
    with pytest.raises(InputError, match=r"no multiplier 1..4 of expm1\(X\)"):
        load_dataset("mine", {**cfg, "recover_counts": True, "log_base": "e"})
    # neither base inverts rounded values: the message says both were tried
    _user_h5ad(path, np.round(log2, 2), kind=["a", "b"] * 20)
    with pytest.raises(InputError, match="Tried natural log and log2"):
        load_dataset("mine", {**cfg, "recover_counts": True})


def _pickled_namespace(path):
    import argparse

    import torch

    torch.save({"w": torch.zeros(2), "args": argparse.Namespace(lr=1e-4)}, path)


def _refusal_checks(text: str, path) -> None:
    assert str(path) in text and "argparse.Namespace" in text  # the blocked global, named
    assert "weights_only=False" not in text and "will likely succeed" not in text and "add_safe_globals" not in text


def test_checkpoint_refusals_name_the_blocked_global_never_the_unsafe_loader(tmp_path):
    import json

    from scfmbench import InputError
    from scfmbench.models.pretrained import load_geneformer_checkpoint, load_scgpt_checkpoint

    scgpt = tmp_path / "scgpt"
    scgpt.mkdir()
    args = {
        "embsize": 8,
        "nheads": 2,
        "d_hid": 16,
        "nlayers": 1,
        "n_layers_cls": 1,
        "dropout": 0.2,
        "input_emb_style": "continuous",
        "n_bins": 51,
        "pad_token": "<pad>",
        "pad_value": -2,
    }
    (scgpt / "args.json").write_text(json.dumps(args))
    (scgpt / "vocab.json").write_text(json.dumps({"G0": 0, "<pad>": 1, "<cls>": 2}))
    _pickled_namespace(scgpt / "best_model.pt")
    with pytest.raises(InputError) as err:
        load_scgpt_checkpoint(scgpt, n_classes=2)
    _refusal_checks(str(err.value), scgpt / "best_model.pt")

    transformers = pytest.importorskip("transformers")
    bert = tmp_path / "bert"
    transformers.BertConfig(
        vocab_size=10,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    ).save_pretrained(bert)
    _pickled_namespace(bert / "pytorch_model.bin")
    with pytest.raises(InputError) as err:
        load_geneformer_checkpoint(bert, n_classes=2)
    _refusal_checks(str(err.value), bert / "pytorch_model.bin")
