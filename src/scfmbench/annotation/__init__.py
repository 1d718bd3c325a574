"""Cell-type annotation: the annotator interface, the built-in methods, predictions and scoring.

An annotator is ``fn(adata, *, seed, **params) -> predicted labels of the test cells`` where
``adata`` is a prepared dataset (:mod:`scfmbench.data.contract`); it may use the train and valid
splits and the test cells' expression, never the test labels. Register one with
:func:`register_annotator`, or add a rule file (docs/extending.md, "Adding a baseline").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scfmbench import InputError
from scfmbench._io import write_json
from scfmbench.annotation.base import ANNOTATORS, register_annotator, test_cells, unseen_record, write_predictions  # noqa: F401  (re-exported)
from scfmbench.data.contract import read_prepared, require_labels
from scfmbench.metrics import annotation_metrics, rare_classes, rare_f1
from scfmbench.provenance import provenance
from scfmbench.results import metrics_record, write_metrics


def run_annotation(
    method: str,
    prepared_path,
    predictions_path,
    *,
    seed: int,
    params: dict | None = None,
    record_path=None,
    graph=None,
    pretrained=None,
    embedding_path=None,
) -> None:
    """Run an annotator on a prepared dataset; write its predictions and a run record (JSON).

    ``method`` is a registered annotator or a transformer id
    ``{backbone}-{attention}[-{ablation}][.{key}{value}]`` (:func:`scfmbench.config.parse_transformer`;
    :func:`scfmbench.annotation.transformer.annotate_transformer`), whose graph kernels run on
    ``graph`` (the gene graph's ``.npz``; the ablation picks which variant the workflow passes).
    ``pretrained``: a pretraining checkpoint the transformer starts from; ``method`` is then
    ``{backbone}-{attention}-pt{strategy}`` (:mod:`scfmbench.pretrain`); its from-scratch
    counterpart is ``{backbone}-{attention}-scratch``. ``embedding_path``: a transformer also writes
    every cell's embedding there (:mod:`scfmbench.embedding`), fine-tuned and, from a checkpoint,
    zero-shot.
    """
    from scfmbench.annotation import controls  # noqa: F401  (registers majority, logreg)
    from scfmbench.config import BACKBONES, parse_transformer

    adata = read_prepared(prepared_path)
    require_labels(adata, task="annotation", where=str(prepared_path))
    params = dict(params or {})
    base = method.rpartition("-pt")[0] if pretrained is not None else method.removesuffix("-scratch")
    spec = None if method in ANNOTATORS else parse_transformer(base, where=f"annotation method {method!r}")
    if method in ANNOTATORS:
        if embedding_path is not None:
            raise InputError(
                f"annotation method {method!r} has no cell embedding; transformers and schyena "
                "write one (scfmbench.embedding)"
            )
        predicted, record = ANNOTATORS[method](adata, seed=seed, **params), {"params": params}
    elif spec is not None:
        from scfmbench.annotation.transformer import annotate_transformer

        if spec.override is not None:  # a sensitivity run: one option of the kernel changed
            kernels = {k: dict(v) for k, v in (params.get("kernel_config") or {}).items()}
            kernels[spec.attention] = {**kernels.get(spec.attention, {}), **spec.kernel_options()}
            params["kernel_config"] = kernels
        predicted, record = annotate_transformer(
            adata,
            backbone=spec.backbone,
            attention=spec.attention,
            seed=seed,
            graph=graph,
            pretrained=pretrained,
            embed=embedding_path is not None,
            **params,
        )
        if embedding_path is not None:
            from scfmbench.embedding import embedding_record, write_embedding

            emb = record.pop("embedding")
            write_embedding(embedding_path, emb, adata.obs_names)
            record["embedding"] = embedding_record(embedding_path, emb)
        record["graph_variant"] = spec.graph_variant if graph is not None else None
    else:
        raise InputError(
            f"unknown annotation method {method!r}; registered: {sorted(ANNOTATORS)} or '{{backbone}}-{{attention}}' "
            f"with backbone in {list(BACKBONES)}"
        )
    test = test_cells(adata)
    if len(predicted) != test.sum():
        raise InputError(
            f"annotation method {method!r} returned {len(predicted)} predictions for {test.sum()} test cells"
        )
    write_predictions(adata.obs_names[test], predicted, predictions_path)
    if record_path is not None:
        write_json(
            {
                **provenance(),
                "method": method,
                "dataset": adata.uns["provenance"].get("dataset"),
                **record,
                **unseen_record(adata),
                "seed": seed,
            },
            record_path,
        )


def score_annotation(prepared_path, predictions_path, *, rare_share: float = 0.05) -> dict[str, float]:
    """Accuracy, macro F1, macro F1 over the training classes (``macro_f1_seen``) and rare-type F1
    (macro F1 over the classes below ``rare_share`` of the training cells; NaN without one) of a
    predictions file against the prepared dataset's test labels."""
    adata = read_prepared(prepared_path)
    require_labels(adata, task="annotation", where=str(prepared_path))
    pred = pd.read_csv(predictions_path, dtype=str)
    for col in ("cell_id", "predicted"):
        if col not in pred:
            raise InputError(
                f"{predictions_path}: column {col!r} missing; a predictions file has columns cell_id, predicted"
            )
    test = adata.obs_names[test_cells(adata)]
    if set(pred["cell_id"]) != set(test) or len(pred) != len(test):
        missing, extra = len(set(test) - set(pred["cell_id"])), len(set(pred["cell_id"]) - set(test))
        raise InputError(
            f"{predictions_path}: predictions must cover exactly the {len(test)} test cells ({missing} missing, "
            f"{extra} not test cells, {len(pred)} rows)"
        )
    truth = adata.obs.loc[pred["cell_id"], "cell_type"].astype(str).to_numpy()
    train = adata.obs["cell_type"].astype(str).to_numpy()[(adata.obs["split"].astype(str) == "train").to_numpy()]
    predicted = pred["predicted"].to_numpy()
    metrics = annotation_metrics(truth, predicted, train_classes=np.unique(train))
    return {**metrics, "rare_f1": rare_f1(truth, predicted, rare_classes(train, share=rare_share))}


def score_main(
    *, prepared, predictions, benchmark, out, dataset: str, method: str, seed: int, rare_share: float = 0.05
) -> None:
    """Score one annotation job and write its metrics record."""
    metrics = score_annotation(prepared, predictions, rare_share=rare_share)
    write_metrics(
        metrics_record(
            task="annotation", dataset=dataset, method=method, seed=seed, metrics=metrics, benchmark=benchmark
        ),
        out,
    )
