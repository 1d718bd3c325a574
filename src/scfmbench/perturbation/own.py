"""Your own Perturb-seq screen (``source: h5ad`` in ``perturbation.datasets``) in GEARS' layout.

The file names its perturbations in one of three conventions, or in the user's own terms
(``datasets.<name>.screen``: column, control label, separator, each overriding the convention's):

==============  ================  ==========  =========  =====================================
convention      column            control     separator  labels
==============  ================  ==========  =========  =====================================
``gears``       ``condition``     ``ctrl``    ``+``      ``ctrl``, ``A+ctrl``, ``A+B`` (kept)
``scperturb``   ``perturbation``  ``control`` ``_``      ``control``, ``A``, ``A_B``
``perturbench`` ``condition``     ``control`` ``+``      ``control``, ``A``, ``A+B``
==============  ================  ==========  =========  =====================================

Labels become GEARS conditions (``ctrl``, ``A+ctrl``, ``A+B``; a part equal to the control label
or ``ctrl`` marks a single); the counts (``counts_layer``, or log-normalized values inverted with
``recover_counts`` and checked as on the annotation route, :func:`scfmbench.data.loaders.load_h5ad`)
are normalized to 1e4 per cell and log1p'd (GEARS' preprocessing), and
:func:`scfmbench.perturbation.data.gears_layout` (the synthetic screen's code) writes GEARS' obs
columns and DE rankings. Perturbed genes outside the panel are an error listing each one, or with
``drop_outside_panel`` their conditions are dropped and recorded; no expression is invented.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from scfmbench import InputError
from scfmbench.perturbation.data import CTRL, describe_missing, gears_layout, genes_outside_panel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Convention:
    column: str
    control: str
    separator: str


CONVENTIONS = {
    "gears": Convention("condition", CTRL, "+"),
    "scperturb": Convention("perturbation", "control", "_"),
    "perturbench": Convention("condition", "control", "+"),
}


def resolve_convention(name: str, screen: dict | None) -> tuple[Convention, str]:
    """The column, control label and separator of ``datasets.<name>.screen`` (the convention's,
    each overridden where set) and the convention's name ('own' when none is declared)."""
    screen = screen or {}
    declared = screen.get("convention")
    if declared is not None and declared not in CONVENTIONS:
        raise InputError(
            f"config key 'datasets.{name}.screen.convention': {declared!r} is not one of {list(CONVENTIONS)}"
        )
    base = CONVENTIONS.get(declared)
    keys = {"column": "condition_column", "control": "control", "separator": "separator"}
    values = {k: screen[key] if screen.get(key) is not None else getattr(base, k, None) for k, key in keys.items()}
    missing = [keys[k] for k, v in values.items() if v is None]
    if missing:
        raise InputError(
            f"config key 'datasets.{name}.screen': declare the file's convention (convention: gears, scperturb "
            f"or perturbench) or name {missing} (the obs column with each cell's perturbation, the control "
            "label, what joins two genes)"
        )
    if not values["separator"]:
        raise InputError(f"config key 'datasets.{name}.screen.separator': must not be empty")
    return Convention(**values), declared or "own"


def to_gears(labels, convention: Convention, *, where: str) -> np.ndarray:
    """Each cell's label as a GEARS condition. Errors list every label that cannot be one (missing,
    more than two genes, a gene twice), with its number of cells."""
    labels = pd.Series(labels)
    if labels.isna().any():
        raise InputError(
            f"{where}: {int(labels.isna().sum())} cells have no {convention.column!r} label; drop them or label them"
        )
    labels = labels.astype(str).to_numpy()
    controls = {convention.control, CTRL}
    mapping, bad = {}, {}
    for label, n in zip(*np.unique(labels, return_counts=True)):
        if label == convention.control:
            mapping[label] = CTRL
            continue
        parts = [p.strip() for p in label.split(convention.separator)]
        genes = [p for p in parts if p not in controls]
        if not genes or any(not g for g in genes) or len(genes) > 2 or len(set(genes)) != len(genes):
            bad[label] = int(n)
        elif len(genes) == 1:
            # GEARS' own labels stay as written ('ctrl+A' is a condition of its own there)
            mapping[label] = (
                label
                if convention.separator == "+" and len(parts) == 2 and set(parts) - {genes[0]} == {CTRL}
                else f"{genes[0]}+{CTRL}"
            )
        else:
            mapping[label] = f"{genes[0]}+{genes[1]}"
    if bad:
        listed = ", ".join(f"{k!r} ({v} cell{'s' * (v != 1)})" for k, v in bad.items())
        raise InputError(
            f"{where}: {len(bad)} label(s) of obs[{convention.column!r}] are not a control "
            f"({convention.control!r}), one gene or two different genes joined by {convention.separator!r}: "
            f"{listed}. GEARS' layout holds singles and pairs; drop those cells, or set datasets.<name>.screen "
            "(convention, control, separator) to the file's terms"
        )
    if CTRL not in mapping.values():
        raise InputError(
            f"{where}: no control cells: no obs[{convention.column!r}] label equals {convention.control!r} "
            f"(labels include {sorted(mapping)[:5]}); set datasets.<name>.screen.control to the control label"
        )
    return np.array([mapping[x] for x in labels], dtype=object)


def load_screen(name: str, cfg: dict) -> ad.AnnData:
    """Your own screen (module docstring): GEARS conditions, log-normalized X, GEARS' layout."""
    import scipy.sparse as sp

    from scfmbench.data.contract import log_normalize
    from scfmbench.data.loaders import load_h5ad

    convention, declared = resolve_convention(name, cfg.get("screen"))
    path = Path(cfg["path"])
    where = f"datasets.{name} ({path})"
    raw = load_h5ad(
        path,
        label_column=None,
        counts_layer=cfg.get("counts_layer", "X"),
        gene_symbols_column=cfg.get("gene_symbols_column"),
        recover_counts=bool(cfg.get("recover_counts", False)),
        log_base=cfg.get("log_base"),
    )
    obs = ad.read_h5ad(path, backed="r").obs
    if convention.column not in obs:
        raise InputError(
            f"{where}: obs has no column {convention.column!r} ({declared} convention); obs has {list(obs.columns)}. "
            "Set datasets.<name>.screen.condition_column (or the convention)"
        )
    condition = to_gears(obs[convention.column].to_numpy(), convention, where=where)
    label = cfg.get("label_column")
    cell_type = (
        obs[label].astype(str).to_numpy() if label and label in obs else np.full(len(obs), "cells", dtype=object)
    )
    symbols = raw.var_names.astype(str)
    dropped = {}
    missing = genes_outside_panel(condition, symbols)
    if missing and not (cfg.get("screen") or {}).get("drop_outside_panel", False):
        raise InputError(
            f"{where}: {len(missing)} perturbed gene(s) are not in the panel "
            f"(var{'[' + repr(cfg['gene_symbols_column']) + ']' if cfg.get('gene_symbols_column') else '_names'}): "
            f"{describe_missing(missing)}. Their expression cannot be scored; set "
            f"datasets.{name}.screen.drop_outside_panel: true to drop those conditions (recorded in "
            "uns['perturbation_source']), or use a file whose panel holds the genes"
        )
    keep = np.ones(len(condition), dtype=bool)
    if missing:
        outside = set(missing)
        drop_conditions = sorted({c for c in condition if c != CTRL and set(c.split("+")) & outside})
        keep = ~pd.Series(condition).isin(drop_conditions).to_numpy()
        dropped = {
            "genes": sorted(missing),
            "gene_conditions": [int(v["conditions"]) for v in missing.values()],
            "gene_cells": [int(v["cells"]) for v in missing.values()],
            "conditions": drop_conditions,
            "cells": int((~keep).sum()),
        }
        log.warning(
            "datasets.%s: dropped %d condition(s), %d cells, perturbing genes outside the panel: %s",
            name,
            len(drop_conditions),
            dropped["cells"],
            describe_missing(missing),
        )
    counts = sp.csr_matrix(raw.layers["counts"])[np.flatnonzero(keep)]
    adata = ad.AnnData(
        X=log_normalize(counts),
        obs=pd.DataFrame(
            {"condition": condition[keep].astype(str), "cell_type": cell_type[keep].astype(str)},
            index=raw.obs_names[keep],
        ),
        var=pd.DataFrame({"gene_name": np.asarray(symbols)}, index=symbols),
    )
    if not (adata.obs["condition"] != CTRL).any():
        raise InputError(
            f"{where}: no perturbed cells "
            f"left{' after dropping the conditions outside the panel' if dropped else ''}; a "
            "screen needs perturbed conditions"
        )
    gears_layout(adata)
    prov = raw.uns["provenance"]
    adata.uns["perturbation_source"] = {
        "dataset": name, "file": str(path), "inputs_sha256": dict(prov["inputs_sha256"]), "counts": str(prov["counts"]),
        "convention": declared, "condition_column": convention.column, "control": convention.control,
        "separator": convention.separator,
        "normalization": "normalize_total 1e4, log1p (here)", "dropped_outside_panel": dropped or {"cells": 0},
    }  # fmt: skip
    return adata
