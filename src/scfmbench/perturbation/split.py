"""GEARS' "simulation" split, by condition (never by cell), and the seeded control pairing.

As ``gears/data_utils.py`` ``DataSplitter.split_data(split_type="simulation")`` and
``get_simulation_split`` (GEARS 0.1.x; ``cell-gears`` is not imported: it imports torch_geometric
and downloads at construction):

1. the perturbed genes (sorted, ``np.unique``) are drawn without replacement, a
   ``train_gene_set_size`` share becoming the train genes (``np.random.seed(seed)`` then
   ``np.random.choice``: reproduced with ``RandomState(seed)``, which draws identically);
2. singles of train genes -> train; combos with exactly one train gene -> ``combo_seen1``; combos
   with both: re-seeded, a ``combo_seen2_train_frac`` share (of the sorted list) to train, the rest
   ``combo_seen2``; singles of the other genes -> ``unseen_single``; combos with none ->
   ``combo_seen0``;
3. validation repeats the draw on the train list with 0.9 / 0.9 and the same seed;
4. ``ctrl`` is always in train.

Before the draw, GEARS (since December 2022, ``cell-gears`` 0.0.3; ``pertdata.py`` ``load`` with
``utils.filter_pert_in_go``) drops every condition with a gene outside its GO gene set; the draw is
then over the remaining genes, so the filter changes every seed's split. :func:`go_missing_genes`
reads the genes GEARS drops per source, shipped with their evidence in
``scfmbench/data/gears/go_missing.csv`` (Norman: RHOXF2BB, IER5L, KIAA1804, 7 of 284 conditions;
Adamson: SRPR, SLMO2, TIMM23, AMIGO3, KCTD16); ``make_split(drop_genes=...)`` applies it and leaves
the dropped conditions out of the split (no train, val or test entry), listed in
``params['go_filter_dropped']``. scGPT pins ``cell-gears<0.0.3`` (no filter): ``perturbation.go_filter:
false`` gives that split.

The result is a :class:`Split`: each condition's split (train / val / test) and test subgroup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scfmbench import InputError
from scfmbench._io import write_json
from scfmbench.perturbation.data import CTRL, condition_genes

SUBGROUPS = ("unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")


def _genes(conditions) -> np.ndarray:
    return np.unique([g for c in conditions for g in condition_genes(c)])


def _with_genes(genes, conditions, kind: str) -> list[str]:
    """GEARS' ``get_perts_from_genes``: the singles or combos (in list order) with a gene in ``genes``."""
    genes = set(genes)
    want = 1 if kind == "single" else 2
    return [c for c in conditions if len(condition_genes(c)) == want and genes & set(condition_genes(c))]


def simulation_split(
    conditions, *, train_gene_set_size: float, combo_seen2_train_frac: float, seed: int
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """One GEARS ``get_simulation_split`` draw: (train, test, subgroups) of ``conditions`` (no ctrl)."""
    conditions = list(conditions)
    genes = _genes(conditions)
    rs = np.random.RandomState(seed)
    train_genes = set(rs.choice(genes, int(len(genes) * train_gene_set_size), replace=False).tolist())
    ood_genes = [g for g in genes if g not in train_genes]
    train = _with_genes(train_genes, conditions, "single")
    combos = _with_genes(train_genes, conditions, "combo")
    seen1 = [c for c in combos if sum(g in train_genes for g in condition_genes(c)) == 1]
    seen2_pool = np.setdiff1d(combos, seen1)
    rs = np.random.RandomState(seed)
    combo_train = (
        rs.choice(seen2_pool, int(len(seen2_pool) * combo_seen2_train_frac), replace=False).tolist()
        if len(seen2_pool)
        else []
    )
    seen2 = np.setdiff1d(seen2_pool, combo_train).tolist()
    unseen_single = _with_genes(ood_genes, conditions, "single")
    seen0 = [c for c in _with_genes(ood_genes, conditions, "combo") if not set(condition_genes(c)) & train_genes]
    train += combo_train
    groups = {"unseen_single": unseen_single, "combo_seen0": seen0, "combo_seen1": seen1, "combo_seen2": seen2}
    test = seen1 + seen2 + unseen_single + seen0
    if len(train) + len(test) != len(conditions):  # GEARS asserts the same
        raise AssertionError("simulation split lost conditions")
    return train, test, groups


@dataclass
class Split:
    """Each condition's split and subgroup, plus the options that made it."""

    split: dict[str, str]  # condition -> train | val | test
    subgroup: dict[str, str]  # test and val condition -> its subgroup
    params: dict = field(default_factory=dict)

    def conditions(self, which: str) -> list[str]:
        return sorted(c for c, s in self.split.items() if s == which)

    def to_dict(self) -> dict:
        return {"split": self.split, "subgroup": self.subgroup, "params": self.params}

    def write(self, path) -> None:
        write_json(self.to_dict(), path)

    @classmethod
    def read(cls, path) -> Split:
        d = json.loads(Path(path).read_text())
        for key in ("split", "subgroup"):
            if key not in d:
                raise InputError(
                    f"{path}: not a perturbation split (no {key!r}); made by scfmbench.perturbation.split.make_split"
                )
        return cls(d["split"], d["subgroup"], d.get("params", {}))


GO_MISSING = Path(__file__).resolve().parents[1] / "data" / "gears" / "go_missing.csv"


def go_missing_genes(source: str) -> tuple[str, ...]:
    """The perturbed genes GEARS drops for lack of GO annotation in dataset ``source``
    (``gears_norman``, ``gears_adamson``; other sources: none), from the shipped table."""
    import csv

    with open(GO_MISSING, newline="") as fh:
        return tuple(row["gene"] for row in csv.DictReader(fh) if row["source"] == source)


def go_filter(conditions, drop_genes) -> tuple[list[str], list[str]]:
    """GEARS' ``filter_pert_in_go``: (kept, dropped) conditions, in order; a condition is dropped
    when one of its genes is in ``drop_genes``; ``ctrl`` is always kept."""
    drop = set(drop_genes)
    kept, dropped = [], []
    for c in conditions:
        (dropped if drop & set(condition_genes(c)) else kept).append(c)
    return kept, dropped


def make_split(
    conditions,
    *,
    seed: int,
    train_gene_set_size: float = 0.75,
    combo_seen2_train_frac: float = 0.75,
    drop_genes=(),
    dataset: str | None = None,
) -> Split:
    """GEARS' simulation split of a dataset's conditions (``ctrl`` included or not: always train).

    Conditions appear in the order given (GEARS: ``adata.obs['condition'].unique()``); the draws do
    not depend on it (genes and the combo pool are sorted first). ``drop_genes``: GEARS' GO filter
    (:func:`go_filter`) before the draw; the dropped conditions get no split. A draw with no
    perturbed training condition or no test condition is an error naming ``dataset``, the seed and
    the counts (GEARS would train on controls alone, or score nothing); an empty validation set is
    left to the methods that need one."""
    where = f"perturbation dataset {dataset!r}" if dataset else "make_split"
    conditions = list(dict.fromkeys(str(c) for c in conditions))
    conditions, dropped = go_filter(conditions, drop_genes)
    perts = [c for c in conditions if c != CTRL]
    if not perts:
        raise InputError(f"{where}: no perturbed condition (only 'ctrl')")
    for c in perts:
        condition_genes(c)  # GEARS form, else a clear error
    train, test, test_groups = simulation_split(
        perts, train_gene_set_size=train_gene_set_size, combo_seen2_train_frac=combo_seen2_train_frac, seed=seed
    )
    n_genes = len(_genes(perts))
    train, val, val_groups = (
        simulation_split(train, train_gene_set_size=0.9, combo_seen2_train_frac=0.9, seed=seed)
        if train
        else ([], [], {})
    )
    for side, got in (("training", train), ("test", test)):
        if not got:
            raise InputError(
                f"{where}, seed {seed}: GEARS' simulation split (train_gene_set_size {train_gene_set_size}, then 0.9 "
                f"of those for training against validation) puts no perturbed condition in {side} ({len(perts)} "
                f"perturbed condition(s) on {n_genes} gene(s), e.g. {perts[:5]}; {len(val)} went to validation); the "
                "screen needs more perturbed genes, or change perturbation.train_gene_set_size"
            )
    split = {c: "train" for c in train} | {c: "val" for c in val} | {c: "test" for c in test} | {CTRL: "train"}
    subgroup = {c: g for g, cs in val_groups.items() for c in cs} | {c: g for g, cs in test_groups.items() for c in cs}
    params = dict(
        seed=seed,
        train_gene_set_size=train_gene_set_size,
        combo_seen2_train_frac=combo_seen2_train_frac,
        method="GEARS simulation",
        go_filter_genes=sorted(drop_genes),
        go_filter_dropped=dropped,
    )
    if dataset:
        params["dataset"] = dataset
    return Split(split, subgroup, params)


def pair_controls(conditions: np.ndarray, *, seed: int) -> np.ndarray:
    """For each cell, the row of the control cell it is paired with (seeded; GEARS draws unseeded).

    A perturbed cell gets a random control cell (with replacement, as GEARS' ``np.random.randint``);
    a control cell is paired with itself (GEARS: input = target = the control cell)."""
    conditions = np.asarray(conditions).astype(str)
    ctrl = np.flatnonzero(conditions == CTRL)
    if not len(ctrl):
        raise InputError("pair_controls: no control cells (condition 'ctrl') to pair perturbed cells with")
    rng = np.random.default_rng(seed)
    out = ctrl[rng.integers(0, len(ctrl), len(conditions))]
    out[ctrl] = ctrl
    return out
