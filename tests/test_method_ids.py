"""Method and dataset ids of the experiment grid: transformer ids with ablations and sensitivity
suffixes, few-shot datasets, and the (dataset, method) runs a config expands to."""

from __future__ import annotations

import pytest

from scfmbench import InputError
from scfmbench.config import (
    TransformerMethod,
    annotation_runs,
    check_methods,
    fewshot_dataset,
    parse_dataset,
    parse_transformer,
    sensitivity_keys,
    sensitivity_method,
    validate_config,
)


@pytest.mark.parametrize(
    "method, expected",
    [
        ("scgpt-full", TransformerMethod("scgpt", "full")),
        ("geneformer-genohoption-p", TransformerMethod("geneformer", "genohoption-p")),
        ("scgpt-genohoption-p-nogrn", TransformerMethod("scgpt", "genohoption-p", "no_grn")),
        ("geneformer-genohoption-h-nocoexpr", TransformerMethod("geneformer", "genohoption-h", "no_coexpr")),
        ("scgpt-genohoption-p.alpha0.1", TransformerMethod("scgpt", "genohoption-p", "full", ("alpha", 0.1))),
        ("scgpt-genohoption-h.t3", TransformerMethod("scgpt", "genohoption-h", "full", ("t", 3.0))),
        ("scgpt-genohoption-p-nogrn.k4", TransformerMethod("scgpt", "genohoption-p", "no_grn", ("k", 4.0))),
        ("scbert-performer", TransformerMethod("scbert", "performer")),
        ("logreg", None),
        ("nearest_centroid", None),
        ("mymodel-full", None),  # not a known backbone: a plug-in's id
    ],
)
def test_parse_transformer(method, expected):
    assert parse_transformer(method) == expected


def test_base_and_kernel_options_round_trip():
    spec = parse_transformer("scgpt-genohoption-p-nogrn.k4")
    assert spec.base == "scgpt-genohoption-p-nogrn"
    assert spec.kernel_options() == {"k": 4} and isinstance(spec.kernel_options()["k"], int)
    assert parse_transformer(sensitivity_method("scgpt-genohoption-p", "alpha", 0.25)).override == ("alpha", 0.25)
    assert sensitivity_method("geneformer-genohoption-h", "t", 5) == "geneformer-genohoption-h.t5"


@pytest.mark.parametrize(
    "method, message",
    [
        ("scgpt-nosuch", "unknown attention 'nosuch'"),
        ("scgpt-full-nogrn", "does not run on one"),
        ("scgpt-genohoption-p.beta0.1", "must be one of ['alpha', 't', 'k']"),
        ("scgpt-genohoption-h.alpha0.1", "takes no option 'alpha'"),
        ("scgpt-full.k2", "takes no option 'k'"),
    ],
)
def test_bad_transformer_ids_are_clear_errors(method, message):
    assert parse_transformer(method) is None  # without a location: just not a transformer id
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        parse_transformer(method, where="here")


def test_sensitivity_keys_follow_the_kernel_signatures():
    assert sensitivity_keys("genohoption-p") == ["alpha", "k"]
    assert sensitivity_keys("genohoption-h") == ["t", "k"]
    assert sensitivity_keys("genohoption") == ["alpha", "t", "k"]
    assert sensitivity_keys("full") == [] and sensitivity_keys("onehop") == []


def test_fewshot_dataset_names_round_trip():
    assert fewshot_dataset("pancreas", 0.25) == "pancreas-fs0.25"
    assert parse_dataset("pancreas-fs0.25") == ("pancreas", 0.25)
    assert parse_dataset("pancreas") == ("pancreas", None)


def _config(schema_path, **blocks):
    cfg = {
        "datasets": {"a": {"source": "pbmc68k"}, "b": {"source": "synthetic"}},
        "annotation": {"datasets": ["a", "b"], "methods": ["majority", "scgpt-genohoption-p"]},
        "imputation": {"datasets": ["a"]},
        "graphs": {"datasets": ["a"]},
        **blocks,
    }
    return validate_config(cfg, schema_path)


def test_annotation_runs_expand_the_three_grids(schema_path, tmp_path):
    cfg = _config(
        schema_path,
        fewshot={"datasets": ["b"], "methods": ["majority", "scgpt-full"], "fractions": [0.1, 0.5]},
        sensitivity={
            "datasets": ["b"],
            "methods": ["scgpt-genohoption-p", "geneformer-genohoption-h"],
            "alpha": [0.1, 0.4],
            "t": [1],
            "k": [2, 6],
        },
    )
    check_methods(cfg, tmp_path)
    runs = annotation_runs(cfg)
    main = {(d, m) for d in ("a", "b") for m in ("majority", "scgpt-genohoption-p")}
    fewshot = {(f"b-fs{f}", m) for f in (0.1, 0.5) for m in ("majority", "scgpt-full")}
    # genohoption-p takes alpha and k (2 + 2 runs); genohoption-h takes t and k (1 + 2 runs).
    sensitivity = {
        ("b", "scgpt-genohoption-p.alpha0.1"),
        ("b", "scgpt-genohoption-p.alpha0.4"),
        ("b", "scgpt-genohoption-p.k2"),
        ("b", "scgpt-genohoption-p.k6"),
        ("b", "geneformer-genohoption-h.t1"),
        ("b", "geneformer-genohoption-h.k2"),
        ("b", "geneformer-genohoption-h.k6"),
    }
    assert len(runs) == len(set(runs)) == 4 + 4 + 7
    assert set(runs) == main | fewshot | sensitivity


@pytest.mark.parametrize(
    "blocks, message",
    [
        (
            {"fewshot": {"datasets": ["nope"], "methods": ["majority"]}},
            "'fewshot.datasets': dataset 'nope' is not defined",
        ),
        ({"sensitivity": {"datasets": ["a"], "methods": ["scgpt-full"]}}, "'sensitivity.methods': 'scgpt-full'"),
        ({"sensitivity": {"datasets": ["a"], "methods": ["logreg"]}}, "'sensitivity.methods': 'logreg'"),
        (
            {"fewshot": {"datasets": ["a"], "methods": ["nosuch"]}},
            "'fewshot.methods': 'nosuch' is not an annotation method",
        ),
        ({"fewshot": {"datasets": ["a"], "methods": ["majority"], "fractions": [1.5]}}, "'fewshot.fractions.0'"),
    ],
)
def test_bad_study_blocks_are_clear_errors(schema_path, tmp_path, blocks, message):
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        check_methods(_config(schema_path, **blocks), tmp_path)


def test_method_datasets_narrow_the_main_grid(schema_path, tmp_path):
    cfg = _config(schema_path)
    cfg["annotation"]["method_datasets"] = {"scgpt-genohoption-p": ["b"]}
    validate_config(cfg, schema_path)
    assert sorted(annotation_runs(cfg)) == [("a", "majority"), ("b", "majority"), ("b", "scgpt-genohoption-p")]
    cfg["annotation"]["method_datasets"] = {"scgpt-genohoption-p": ["c"]}
    with pytest.raises(
        InputError,
        match=r"'annotation\.method_datasets\.scgpt-genohoption-p': dataset 'c' is not in annotation\.datasets",
    ):
        validate_config(cfg, schema_path)
