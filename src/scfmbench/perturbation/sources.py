"""Where a perturbation dataset comes from (``perturbation.datasets``): simulated
(``synthetic_perturb``), one of GEARS' distributed screens (:data:`GEARS_SCREENS`, as distributed)
or your own screen (``h5ad``, :mod:`scfmbench.perturbation.own`); every one in the layout of
:mod:`scfmbench.perturbation.data`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anndata as ad

from scfmbench import InputError
from scfmbench.perturbation.data import check_perturbation_data, gears_layout
from scfmbench.perturbation.own import load_screen


def load_gears_perturbation(dataset: str, roots: list[Path]) -> ad.AnnData:
    """GEARS' ``<dataset>/perturb_processed.h5ad`` exactly as distributed (X, obs, var, uns), checked.

    Unlike the annotation loader (:func:`scfmbench.data.sources.load_gears`, which recovers counts
    and keeps symbols as var_names), nothing is rebuilt: GEARS scores on this X and its uns rankings
    list these var_names.
    """
    from scfmbench.data.sources import Bundle, materialize

    with tempfile.TemporaryDirectory(prefix="scfmbench-") as tmp:
        found = Bundle(roots, Path(tmp), f"gears_{dataset}").find("perturb_processed.h5ad", aliases=(dataset,))
        adata = ad.read_h5ad(materialize(found.root, found.member, Path(tmp)))
    adata.obs_names = adata.obs_names.astype(str)
    check_perturbation_data(adata, where=f"gears_{dataset} perturb_processed.h5ad")
    adata.uns["perturbation_source"] = {"dataset": dataset, "file": str(found.origin)}
    return adata


#: GEARS' distributed screens: source -> the name ``PertData.load`` takes (the zip's folder).
GEARS_SCREENS = {
    "gears_adamson": "adamson",
    "gears_norman": "norman",
    "gears_dixit": "dixit",
    "gears_replogle_k562": "replogle_k562_essential",
    "gears_replogle_rpe1": "replogle_rpe1_essential",
}


def load_perturbation_dataset(name: str, cfg: dict) -> ad.AnnData:
    """A perturbation dataset from its config entry: ``source: synthetic_perturb`` (simulated, GEARS
    layout computed here), a GEARS screen (:data:`GEARS_SCREENS`, as distributed) or ``h5ad`` (your
    own screen, :func:`scfmbench.perturbation.own.load_screen`: GEARS layout computed here)."""
    source = cfg.get("source")
    if source == "synthetic_perturb":
        from scfmbench.data.synthetic import simulate_perturbseq

        return gears_layout(simulate_perturbseq(**(cfg.get("perturbseq") or {})), cell_type="synthetic")
    if source == "h5ad":
        return load_screen(name, cfg)
    if source in GEARS_SCREENS:
        from scfmbench.data.sources import check_inputs, source_inputs

        roots = source_inputs(source, cfg)
        check_inputs(name, source, roots, cfg)
        return load_gears_perturbation(GEARS_SCREENS[source], roots)
    raise InputError(
        f"datasets.{name}: source {source!r} is not a perturbation dataset; perturbation.datasets takes "
        f"sources {['synthetic_perturb', 'h5ad', *GEARS_SCREENS]}"
    )
