"""The perturbation-prediction task (GenoHoption Fig. 3; the GEARS protocol).

Pieces, one module each: :mod:`~scfmbench.perturbation.data` (the GEARS layout contract, DE
rankings, loading), :mod:`~scfmbench.perturbation.split` (simulation split, control pairing),
:mod:`~scfmbench.perturbation.metrics` (GEARS' metrics), :mod:`~scfmbench.perturbation.methods`
(controls and baselines, a registry), :mod:`~scfmbench.perturbation.generator` (the scGPT-style
generator with any attention kernel). File contract::

    results/perturbation/{dataset}/data.h5ad                          # GEARS layout (data.py)
    results/perturbation/{dataset}/seed{seed}/split.json              # Split.to_dict()
    results/perturbation/{dataset}/{method}/seed{seed}/predictions.npz  # conditions (str), mean (C, G)
    results/perturbation/{dataset}/{method}/seed{seed}/metrics.csv      # METRIC_COLUMNS, metric '<name>:<subgroup>'
    results/perturbation/{dataset}/{method}/seed{seed}/conditions.csv   # per-condition metrics
"""

from __future__ import annotations

import logging
import time

import anndata as ad
import numpy as np

from scfmbench import InputError
from scfmbench._io import atomic_path, write_csv, write_json

log = logging.getLogger(__name__)


def write_dataset(name: str, cfg: dict, out) -> None:
    """Load (or simulate) a perturbation dataset in the GEARS layout and write it to ``out``."""
    from scfmbench.perturbation.data import check_perturbation_data
    from scfmbench.perturbation.sources import load_perturbation_dataset

    adata = load_perturbation_dataset(name, cfg)
    check_perturbation_data(adata, where=f"datasets.{name}")
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)


def read_dataset(path) -> ad.AnnData:
    from scfmbench.perturbation.data import check_perturbation_data

    adata = ad.read_h5ad(path)
    check_perturbation_data(adata, where=str(path))
    return adata


def write_splits(data_path, outs, *, seeds, params: dict) -> None:
    """One GEARS simulation split per seed (``params``: ``train_gene_set_size``, ``combo_seen2_train_frac``,
    ``drop_genes``: GEARS' GO filter, :func:`scfmbench.perturbation.split.go_missing_genes`)."""
    from pathlib import Path

    from scfmbench.perturbation.split import go_filter, make_split

    conditions = ad.read_h5ad(data_path, backed="r").obs["condition"].astype(str).unique()
    dropped = go_filter(conditions, params.get("drop_genes", ()))[1]
    if dropped:
        log.warning(
            "GEARS' GO filter: %d conditions with genes %s are left out of every split: %s",
            len(dropped),
            sorted(params["drop_genes"]),
            dropped,
        )
    for seed, out in zip(seeds, outs):
        make_split(conditions, seed=int(seed), dataset=Path(data_path).parent.name, **params).write(out)


def predict(
    method: str, adata, split, *, seed: int, params: dict | None = None, graph_params: dict | None = None
) -> tuple[list[str], np.ndarray, dict]:
    """Run ``method`` on the test conditions: (conditions, means (C, G), run record)."""
    from scfmbench.perturbation.generator import is_generator, predict_generator
    from scfmbench.perturbation.methods import get_predictor

    conditions = split.conditions("test")
    params = dict(params or {})
    start = time.perf_counter()
    if is_generator(method):
        means, record = predict_generator(
            method, adata, split, conditions, seed=seed, graph_params=graph_params, **params
        )
    else:
        np.random.seed(seed)  # the controls use numpy only (no torch import in their jobs)
        fn = get_predictor(method)
        try:
            means = fn(adata, split, conditions, seed=seed, **params)
        except TypeError as exc:
            raise InputError(f"params.{method}: {exc}") from None
        means, record = means if isinstance(means, tuple) else (means, {})
    means = np.asarray(means, dtype=np.float64)  # float64 kept: no_change's delta stays exactly 0
    if means.shape != (len(conditions), adata.n_vars):
        raise InputError(f"{method} returned shape {means.shape}; expected ({len(conditions)}, {adata.n_vars})")
    return (
        conditions,
        means,
        {"method": method, "seed": seed, "params": params, "seconds": time.perf_counter() - start, **record},
    )


def run_method(
    method: str,
    data_path,
    split_path,
    out,
    *,
    seed: int,
    params: dict | None = None,
    record_path=None,
    graph_params: dict | None = None,
) -> None:
    """Read data and split, predict, write ``predictions.npz`` (and the run record)."""
    from scfmbench.perturbation.split import Split

    adata = read_dataset(data_path)
    conditions, means, record = predict(
        method, adata, Split.read(split_path), seed=seed, params=params, graph_params=graph_params
    )
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, conditions=np.asarray(conditions, dtype=str), mean=means)
    if record_path:
        write_json(record, record_path)


def read_predictions(path) -> tuple[list[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        if "conditions" not in z or "mean" not in z:
            raise InputError(
                f"{path}: a perturbation prediction holds 'conditions' and 'mean' (C x genes); found {list(z.keys())}"
            )
        return [str(c) for c in z["conditions"]], z["mean"]


def score_main(
    *, data, split, predictions, benchmark, out, conditions_out, dataset: str, method: str, seed: int
) -> None:
    """Score one run: metrics record (``<metric>:<subgroup>``) and the per-condition table.
    ``data`` is the dataset's path or the dataset itself (a scoring job reads it once)."""
    from scfmbench.perturbation.metrics import perturbation_scores, summarize
    from scfmbench.perturbation.split import SUBGROUPS, Split
    from scfmbench.results import metrics_record, write_metrics

    adata = data if isinstance(data, ad.AnnData) else read_dataset(data)
    sp = Split.read(split)
    conds, means = read_predictions(predictions)
    expected = sp.conditions("test")
    missing = sorted(set(expected) - set(conds))
    if missing:
        raise InputError(f"{predictions}: no prediction for test conditions {missing[:5]} ({len(missing)} missing)")
    keep = [conds.index(c) for c in expected]
    per = perturbation_scores(adata, expected, means[keep], sp.subgroup)
    write_csv(per, conditions_out)
    write_metrics(
        metrics_record(
            task="perturbation",
            dataset=dataset,
            method=method,
            seed=seed,
            metrics=summarize(per, SUBGROUPS),
            benchmark=benchmark,
        ),
        out,
    )


PERTURBATION_SOURCES = (
    "synthetic_perturb",
    "h5ad",
    "gears_adamson",
    "gears_norman",
    "gears_dixit",
    "gears_replogle_k562",
    "gears_replogle_rpe1",
)


def check_config(config: dict, rule_dir) -> None:
    """``perturbation``: datasets with perturbation sources; methods built in, ``scgpt-<kernel>[-paperloss]``
    or a rule file ``rule_dir/<id>.smk``."""
    from pathlib import Path

    from scfmbench.perturbation.generator import parse_generator
    from scfmbench.perturbation.methods import BUILTIN_PREDICTORS

    block = config["perturbation"]
    for name in block["datasets"]:
        if name not in config["datasets"]:
            raise InputError(f"config key 'perturbation.datasets': {name!r} is not a key of 'datasets'")
        source = config["datasets"][name]["source"]
        if source not in PERTURBATION_SOURCES:
            raise InputError(
                f"config key 'perturbation.datasets': {name!r} has source {source!r}; perturbation datasets have "
                f"source {list(PERTURBATION_SOURCES)}"
            )
        if source == "h5ad":
            from scfmbench.perturbation.own import resolve_convention

            resolve_convention(name, config["datasets"][name].get("screen"))
    plugged = {p.stem for p in Path(rule_dir).glob("*.smk")}
    for method in block["methods"]:
        if method in BUILTIN_PREDICTORS or method in plugged or parse_generator(method):
            continue
        raise InputError(
            f"config key 'perturbation.methods': {method!r} is neither built in ({list(BUILTIN_PREDICTORS)}, or "
            f"'scgpt-<attention kernel>[-paperloss]') nor provided by a rule file {Path(rule_dir) / (method + '.smk')}"
        )
    if "scgpt" in block["params"]:
        from scfmbench.models.scgpt_generator import check_loss

        check_loss(block["params"]["scgpt"].get("loss", "mse"))


def method_runs(config: dict) -> list[tuple[str, str]]:
    """(dataset, method) of every configured run; ``oracle`` only on datasets with a known truth."""
    block = config["perturbation"]
    return [
        (d, m)
        for d in block["datasets"]
        for m in block["methods"]
        if not (m == "oracle" and config["datasets"][d]["source"] != "synthetic_perturb")
    ]


def is_generator(method: str) -> bool:
    from scfmbench.perturbation.generator import is_generator as _is

    return _is(method)


def method_params(config: dict, method: str) -> dict:
    """A method's options: ``perturbation.params.scgpt`` for every generator, else ``params.<method>``."""
    from scfmbench.perturbation.generator import is_generator

    return dict(config["perturbation"]["params"].get("scgpt" if is_generator(method) else method) or {})
