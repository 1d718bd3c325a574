"""What each masking strategy masks, and the pretraining report (tables, figure, per-class F1).

Masked-set statistics (:func:`masked_set_stats`), per (dataset, backbone, strategy, seed), on up to
``n_cells`` training cells with ``repeats`` draws each, in the backbone's own value units (bins for
scGPT and scBERT, log-normalized values for scHyena and scFoundation):

- ``share_nonzero_masked`` / ``share_zero_masked``: masked share of the non-zero / zero positions;
- ``mean_value_masked`` beside ``mean_value_nonzero`` (all non-zero maskable values);
- ``entropy``: entropy of each cell's empirical masking distribution (position frequencies over the
  draws, normalized to sum 1) over log(number of maskable positions): 1 = every position equally
  likely, lower = concentrated;
- ``hvg_overlap``: share of the masked positions that are highly variable genes (the top 10% of
  genes by variance of the log-normalized values over the training cells), beside ``hvg_share``,
  their share of the maskable positions (what a value-blind strategy would give).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from scfmbench._io import write_csv
from scfmbench.models.tokenize import N_SPECIAL

STAT_COLUMNS = ["dataset", "backbone", "strategy", "seed", "statistic", "value"]


def highly_variable(adata, *, share: float = 0.1) -> np.ndarray:
    """(G,) bool: the top ``share`` genes by variance of X over the training cells."""
    train = (adata.obs["split"].astype(str) == "train").to_numpy()
    x = adata.X[train]
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    var = x.var(0)
    out = np.zeros(adata.n_vars, dtype=bool)
    out[np.argsort(-var, kind="stable")[: max(1, int(round(share * adata.n_vars)))]] = True
    return out


@torch.no_grad()
def masked_set_stats(
    model, strategy, data, *, adata, gene_index=None, seed: int = 0, n_cells: int = 64, repeats: int = 16
) -> dict[str, float]:
    """Statistics of ``strategy``'s masks on the first ``n_cells`` cells of ``data`` (a
    :class:`~scfmbench.pretrain.loop.MaskedCells`); ``gene_index`` (N, L) token ids (gene g = g + 2)
    or None (position j is gene j)."""
    model.eval()
    n = min(n_cells, len(data))
    b = data.batch(torch.arange(n))
    values, maskable = b.values, b.eligible()
    device = next(model.parameters()).device
    values, maskable = values.to(device), maskable.to(device)
    hvg = torch.from_numpy(highly_variable(adata))
    if gene_index is None:
        genes = torch.arange(values.shape[1]).expand(n, -1)
    else:
        genes = (gene_index[:n, : values.shape[1]].expand(n, values.shape[1]) - N_SPECIAL).cpu()
    is_hvg = torch.zeros(genes.shape, dtype=torch.bool)
    inside = (genes >= 0) & (genes < len(hvg))
    is_hvg[inside] = hvg[genes[inside]]
    is_hvg = is_hvg.to(device) & maskable
    gen = torch.Generator().manual_seed(10_000 + seed)
    counts = torch.zeros_like(values)
    for _ in range(repeats):
        counts += strategy.draw(values, maskable, generator=gen, scorer=getattr(model, "scorer", None)).mask
    nonzero, zero = maskable & (values != 0), maskable & (values == 0)
    freq = counts / counts.sum(1, keepdim=True).clamp_min(1)
    ent = -(freq * freq.clamp_min(1e-30).log()).sum(1) / maskable.sum(1).clamp_min(2).double().log()
    total = counts.sum().clamp_min(1)
    return {
        "share_nonzero_masked": float((counts * nonzero).sum() / (repeats * nonzero.sum().clamp_min(1))),
        "share_zero_masked": float((counts * zero).sum() / (repeats * zero.sum().clamp_min(1))),
        "mean_value_masked": float((counts * values).sum() / total),
        "mean_value_nonzero": float(values[nonzero].mean()) if nonzero.any() else float("nan"),
        "entropy": float(ent.mean()),
        "hvg_overlap": float((counts * is_hvg).sum() / total),
        "hvg_share": float(is_hvg.sum() / maskable.sum().clamp_min(1)),
    }


def write_masked_set(stats: dict[str, float], path, *, dataset: str, backbone: str, strategy: str, seed: int) -> None:
    write_csv(
        pd.DataFrame(
            [
                dict(dataset=dataset, backbone=backbone, strategy=strategy, seed=int(seed), statistic=k, value=v)
                for k, v in stats.items()
            ],
            columns=STAT_COLUMNS,
        ),
        path,
    )


# ------------------------------------------------------------------------------------------------
# report


def per_class_f1(truth, predicted) -> dict[str, float]:
    """F1 of each class present in ``truth`` (2 TP / (2 TP + FP + FN))."""
    truth, predicted = np.asarray(truth).astype(str), np.asarray(predicted).astype(str)
    out = {}
    for c in np.unique(truth):
        t, p = truth == c, predicted == c
        out[c] = 2 * float((t & p).sum()) / float(t.sum() + p.sum())
    return out


def _mean_std(df: pd.DataFrame, index, columns) -> pd.DataFrame:
    g = df.groupby(index + columns)["value"]
    cell = (
        g.mean().map("{:.3f}".format)
        + " ± "
        + g.std(ddof=1).fillna(0).map("{:.3f}".format)
        + " (n="
        + g.size().astype(str)
        + ")"
    )
    return cell.unstack(columns)


def report_main(
    *, metrics_files, masked_set_files, runs, table_md, table_csv, masked_md, masked_csv, per_class_csv, figure
) -> None:
    """Pretraining report. ``runs``: rows ``[dataset, method, backbone, strategy, prepared
    (seed -> path), predictions (seed -> path)]``; strategy ``scratch`` for from-scratch runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scfmbench.annotation.base import test_cells
    from scfmbench.data.contract import read_prepared
    from scfmbench.results import read_metrics

    metrics = read_metrics(metrics_files)
    info = pd.DataFrame([r[:4] for r in runs], columns=["dataset", "method", "backbone", "strategy"])
    df = metrics[metrics["task"] == "annotation"].merge(info, on=["dataset", "method"])
    df = df[df["metric"].isin(["accuracy", "macro_f1", "rare_f1"])]
    write_csv(df[["dataset", "backbone", "strategy", "method", "seed", "metric", "value"]], table_csv)
    wide = _mean_std(df, ["backbone", "strategy"], ["dataset", "metric"])
    lines = ["# Cell types after masked pretraining (mean ± std over seeds)", "", wide.to_markdown(), ""]
    with open(table_md, "w") as fh:
        fh.write("\n".join(lines))
    stats = (
        pd.concat([pd.read_csv(p) for p in masked_set_files])
        if masked_set_files
        else pd.DataFrame(columns=["dataset", "backbone", "strategy", "seed", "statistic", "value"])
    )
    write_csv(stats, masked_csv)
    with open(masked_md, "w") as fh:
        fh.write(
            "# What each strategy masks (mean ± std over seeds; backbone value units)\n\n"
            + (
                _mean_std(stats, ["dataset", "backbone", "strategy"], ["statistic"]).to_markdown()
                if len(stats)
                else "(none)"
            )
            + "\n"
        )
    rows = []
    for dataset, method, _backbone, _strategy, prepared, predictions in runs:
        for seed, path in predictions.items():
            adata = read_prepared(prepared[seed])
            pred = pd.read_csv(path, dtype=str).set_index("cell_id")["predicted"]
            test = adata.obs_names[test_cells(adata)]
            for c, v in per_class_f1(adata.obs.loc[test, "cell_type"].astype(str), pred.loc[test]).items():
                rows.append(
                    dict(task="annotation", dataset=dataset, method=method, seed=int(seed), metric=f"f1:{c}", value=v)
                )
    write_csv(pd.DataFrame(rows, columns=["task", "dataset", "method", "seed", "metric", "value"]), per_class_csv)
    datasets = sorted(df["dataset"].unique())
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5 * max(1, len(datasets)), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        sub = df[(df["dataset"] == dataset) & (df["metric"] == "macro_f1")]
        backbones, strategies = (
            sorted(sub["backbone"].unique()),
            sorted(sub["strategy"].unique(), key=lambda s: (s != "scratch", s)),
        )
        for j, strategy in enumerate(strategies):
            for i, backbone in enumerate(backbones):
                v = sub[(sub["backbone"] == backbone) & (sub["strategy"] == strategy)]["value"].to_numpy()
                x = i + (j - (len(strategies) - 1) / 2) * 0.8 / max(1, len(strategies))
                ax.scatter(np.full(len(v), x), v, s=18, color=f"C{j}", label=strategy if i == 0 else None)
        ax.set_xticks(range(len(backbones)), backbones)
        ax.set_title(dataset)
        ax.set_ylabel("test macro F1 (a point per seed)")
        ax.legend(fontsize=7, title="pretraining", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)
