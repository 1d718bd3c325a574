"""One function per scHyena workflow rule (``workflow/rules/schyena.smk``): read, call, write.

Every function takes the rule's paths, the seed and the ``params.schyena`` config entry (checked by
:meth:`SchyenaParams.from_dict`). Outputs are written atomically.

=======================  ==============================================================================
rule                     function and outputs
=======================  ==============================================================================
pretrain (schyena)       :func:`pretrain_main`: ``results/pretrain/{dataset}/schyena/uniform/seed{seed}/checkpoint.pt``
annotate_schyena         :func:`finetune_main`: ``predictions.csv``, ``run.json`` (annotation contract),
                         ``results/schyena/{dataset}/seed{seed}/finetuned.pt``
detect_doublets_schyena  :func:`doublet_main`: ``results/doublet/{dataset}/schyena/seed{seed}/``
                         ``predictions.csv`` (cell_id, truth, predicted), ``run.json``
score_doublets           :func:`score_doublet_main`: ``.../metrics.csv`` (task ``doublet``)
impute_schyena           :func:`impute_main`: the imputation contract's ``predictions.npz``
schyena_umap             :func:`umap_main`: ``results/report/figures/schyena_umap_{dataset}.png`` (from
                         annotate_schyena's ``embedding.npz`` of the first seed)
=======================  ==============================================================================
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from scfmbench._io import write_json
from scfmbench.schyena.params import SchyenaParams

log = logging.getLogger(__name__)

METHOD = "schyena"


def _record(adata, *, seed: int, params: SchyenaParams, **extra) -> dict[str, Any]:
    from scfmbench.provenance import provenance

    return {
        **provenance(),
        "method": METHOD,
        "dataset": adata.uns.get("provenance", {}).get("dataset"),
        "seed": int(seed),
        "params": dataclasses.asdict(params),
        **extra,
    }


def pretrain_main(
    prepared_path: str | Path,
    checkpoint_path: str | Path,
    *,
    dataset: str,
    seed: int,
    params: dict | None = None,
    strategy=None,
) -> None:
    """Pretrain on the training cells of a prepared dataset; save model config + run config + weights.

    ``strategy``: a masking strategy (:mod:`scfmbench.pretrain.masking`); None = ``uniform`` over
    ``mask_low``-``mask_high`` (the paper's). Called by the pretraining stage (rule ``pretrain``)."""
    from scfmbench.data.contract import read_prepared
    from scfmbench.models.schyena import SCHyenaConfig
    from scfmbench.provenance import provenance
    from scfmbench.schyena.tasks import pretrain, save_checkpoint

    p = SchyenaParams.from_dict(params)
    adata = read_prepared(prepared_path)
    config = SCHyenaConfig(n_genes=adata.n_vars, **p.model())
    model, hist = pretrain(adata, config=config, seed=seed, strategy=strategy, **p.pretrain())
    run_config = {
        **provenance(),
        "dataset": dataset,
        "prepared": str(prepared_path),
        "seed": int(seed),
        "genes": adata.var_names.tolist(),  # gene id j = this list's j-th gene
        "pretrain": {
            **p.pretrain(),
            "strategy": "uniform" if strategy is None else strategy.options() | {"name": strategy.name},
            "cells": "train split only (valid monitored, test never read)",
        },
        "params": dataclasses.asdict(p),
        "num_params": model.num_params(),
        "flops_per_cell": model.flops_per_cell(adata.n_vars),
        "history": dataclasses.asdict(hist),
    }
    save_checkpoint(checkpoint_path, model, run_config)


def _load_pretrained(checkpoint_path, adata):
    from scfmbench import InputError
    from scfmbench.schyena.tasks import load_checkpoint

    model, run_config = load_checkpoint(checkpoint_path)
    genes = run_config.get("genes")
    if genes is not None and list(genes) != adata.var_names.tolist():
        raise InputError(
            f"{checkpoint_path}: pretrained on another gene list than this dataset's ({len(genes)} vs {adata.n_vars} "
            "genes); pretrain on this dataset"
        )
    return model, run_config


def finetune_main(
    prepared_path,
    checkpoint_path,
    predictions_path,
    run_path,
    finetuned_path,
    *,
    seed: int,
    params: dict | None = None,
    embedding_path=None,
) -> None:
    """Fine-tune the pretrained model on cell types; write test predictions, a run record and the fine-tuned checkpoint,
    and with ``embedding_path`` every cell's [CLS] embedding of the pretrained and the fine-tuned model
    (:mod:`scfmbench.embedding`)."""
    from scfmbench.annotation.base import unseen_record, write_predictions
    from scfmbench.data.contract import read_prepared, require_labels
    from scfmbench.schyena.tasks import finetune_classifier, save_checkpoint

    p = SchyenaParams.from_dict(params)
    adata = read_prepared(prepared_path)
    require_labels(adata, task="annotation", where=str(prepared_path))
    model, pre = _load_pretrained(checkpoint_path, adata)
    result = finetune_classifier(model, adata, seed=seed, **p.finetune())
    write_predictions(result.cell_ids, result.predicted, predictions_path)
    record = _record(
        adata,
        seed=seed,
        params=p,
        pretrained=str(checkpoint_path),
        finetune=p.finetune(),
        **result.record(),
        **unseen_record(adata),
    )
    if embedding_path is not None:
        from scfmbench.embedding import CellEmbeddings, embedding_record, write_embedding
        from scfmbench.schyena.tasks import cls_embeddings

        emb = CellEmbeddings(
            cls_embeddings(result.model, adata),
            result.model.embedding_pooling(),
            cls_embeddings(model, adata),
            f"pretraining checkpoint {checkpoint_path} before fine-tuning",
        )
        write_embedding(embedding_path, emb, adata.obs_names)
        record["embedding"] = embedding_record(embedding_path, emb)
    save_checkpoint(finetuned_path, result.model, {**record, "pretrain_run": pre})
    write_json(record, run_path)


def doublet_main(
    prepared_path, checkpoint_path, predictions_path, run_path, *, seed: int, params: dict | None = None
) -> None:
    """Doublet detection: simulate doublets in every split, fine-tune with the extra class, predict the augmented test
    split."""
    from scfmbench.data.contract import read_prepared, require_labels
    from scfmbench.schyena.doublets import write_doublet_predictions
    from scfmbench.schyena.tasks import detect_doublets

    p = SchyenaParams.from_dict(params)
    adata = read_prepared(prepared_path)
    require_labels(
        adata, task="annotation", where=str(prepared_path)
    )  # doublets run on the annotation datasets, a class beside the cell types
    model, _ = _load_pretrained(checkpoint_path, adata)
    result, metrics = detect_doublets(model, adata, seed=seed, rate=p.doublet_rate, **p.finetune())
    write_doublet_predictions(result.cell_ids, result.truth, result.predicted, predictions_path)
    write_json(
        _record(
            adata,
            seed=seed,
            params=p,
            pretrained=str(checkpoint_path),
            doublet_rate=p.doublet_rate,
            metrics=metrics,
            **result.record(),
        ),
        run_path,
    )


def doublet_control_main(prepared_path, predictions_path, *, seed: int, params: dict | None = None) -> None:
    """The doublet task's ``all_doublet`` control on the doublets scHyena's job simulates (same seed and rate)."""
    from scfmbench.data.contract import read_prepared, require_labels
    from scfmbench.schyena.doublets import all_doublet_control, write_doublet_predictions

    p = SchyenaParams.from_dict(params)
    adata = read_prepared(prepared_path)
    require_labels(adata, task="annotation", where=str(prepared_path))
    write_doublet_predictions(*all_doublet_control(adata, seed=seed, rate=p.doublet_rate), predictions_path)


def score_doublet_main(predictions_path, metrics_path, *, dataset: str, method: str, seed: int, benchmark=None) -> None:
    """Score a doublet predictions file and write its metrics record (task ``doublet``)."""
    from scfmbench.results import metrics_record, write_metrics
    from scfmbench.schyena.doublets import score_doublets

    write_metrics(
        metrics_record(
            task="doublet",
            dataset=dataset,
            method=method,
            seed=seed,
            metrics=score_doublets(predictions_path),
            benchmark=benchmark,
        ),
        metrics_path,
    )


def impute_main(masked_path, predictions_path, *, seed: int, params: dict | None = None):
    """Run the ``schyena`` imputer on every fold of the masks (its options from ``params.schyena``)."""
    from scfmbench.impute.methods import impute_main as run

    return run(METHOD, masked_path, predictions_path, seed=seed, params=SchyenaParams.from_dict(params).imputer())


def umap_main(prepared_path, embedding_path, png_path, *, dataset: str, seed: int, params: dict | None = None) -> None:
    """UMAP of the [CLS] embeddings of every cell, pretrained and fine-tuned side by side, coloured by
    cell type: the ``zeroshot`` and ``embedding`` arrays annotate_schyena wrote (:mod:`scfmbench.embedding`)."""
    from scfmbench import InputError
    from scfmbench.data.contract import read_prepared
    from scfmbench.embedding import read_embedding
    from scfmbench.schyena.umap import plot_umaps, umap_coordinates

    p = SchyenaParams.from_dict(params)
    adata = read_prepared(prepared_path)
    emb = read_embedding(embedding_path, adata.obs_names)
    if emb.zeroshot is None:
        raise InputError(f"{embedding_path}: no pretrained [CLS] embedding ('zeroshot'); rerun annotate_schyena")
    panels = {}
    for name, values in (("pretrained [CLS]", emb.zeroshot), ("fine-tuned [CLS]", emb.embedding)):
        panels[name] = umap_coordinates(values, seed=seed, n_neighbors=p.umap_neighbors)
    plot_umaps(
        panels,
        adata.obs["cell_type"].astype(str).to_numpy(),
        png_path,
        title=f"scHyena on {dataset} (seed {seed}, all {adata.n_obs} cells, {adata.n_vars} genes)",
    )
