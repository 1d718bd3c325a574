"""One figure per task: a panel per metric, methods on x, datasets as hue, every seed a point.

Figures are built on a bare :class:`matplotlib.figure.Figure` with an Agg canvas rather than
through ``pyplot``: no global figure registry to leak into (nothing to close), no dependence on
the interactive backend of whoever imports the package, and safe in a Snakemake job without a
display.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from scfmbench._io import atomic_path
from scfmbench.report.tables import _task_rows, higher_is_better

NO_RESULTS = "no results configured"


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 150) -> None:
    """Write ``fig`` to ``path`` as a PNG (Agg canvas, atomically)."""
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def empty_figure(message: str) -> Figure:
    """A small figure that only says ``message`` (a report with nothing to plot still writes its PNG)."""
    fig = Figure(figsize=(4, 2.5))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    return fig


def plot_task(metrics: pd.DataFrame, task: str, path: str | Path) -> None:
    """Plot every metric of ``task`` and write a PNG to ``path`` (atomically).

    Bars are the mean over seeds with ±1 standard-deviation error bars; points are the individual
    seeds. Values that are NaN (e.g. Pearson of a constant prediction) are not drawn; a method
    with no finite value in a panel is marked ``n/a`` on its axis position. With no records for
    ``task`` the figure holds only the text "no results configured".
    """
    df = _task_rows(metrics, task)
    if df.empty:
        save_figure(empty_figure(NO_RESULTS), path)
        return

    methods = sorted(df["method"].unique())
    datasets = sorted(df["dataset"].unique())
    metric_names = sorted(df["metric"].unique())
    palette = dict(zip(datasets, sns.color_palette("colorblind", len(datasets))))

    ncols = min(len(metric_names), 3)
    nrows = math.ceil(len(metric_names) / ncols)
    panel_w = max(3.2, 0.9 + 0.28 * len(methods) * max(1.0, len(datasets) ** 0.5))
    fig = Figure(figsize=(panel_w * ncols + 1.6, 3.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()

    for ax, metric in zip(axes, metric_names):
        sub = df[(df["metric"] == metric) & df["value"].notna()]
        # Only the datasets that have this metric (the *_truth metrics exist on synthetic data only):
        # seaborn 0.13's barplot drops absent hue levels but stripplot keeps them, which would
        # misalign points and bars. Colours stay fixed across panels through the palette dict.
        hue_order = [d for d in datasets if d in set(sub["dataset"])]
        common = dict(
            data=sub,
            x="method",
            y="value",
            hue="dataset",
            order=methods,
            hue_order=hue_order,
            palette=palette,
            ax=ax,
            legend=False,
        )
        if not sub.empty:
            # With the same hue levels, barplot and stripplot(dodge=True) use the same offsets.
            sns.barplot(**common, errorbar="sd", alpha=0.45, capsize=0.15, err_kws={"linewidth": 1.2})
            sns.stripplot(**common, dodge=True, jitter=0.08, size=4, edgecolor="black", linewidth=0.4)
        else:
            ax.set_xticks(range(len(methods)), methods)
            ax.set_xlim(-0.5, len(methods) - 0.5)
        for i, method in enumerate(methods):
            if method not in set(sub["method"]):
                ax.text(
                    i,
                    0.02,
                    "n/a",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="0.4",
                    transform=ax.get_xaxis_transform(),
                )
        direction = "higher" if higher_is_better(metric) else "lower"
        ax.set_title(f"{metric} ({direction} is better)", fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel(metric)
        ax.tick_params(axis="x", labelrotation=40)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(metric_names) :]:
        ax.set_axis_off()

    handles = [Patch(facecolor=palette[d], edgecolor="black", linewidth=0.4, label=d) for d in datasets]
    fig.legend(handles=handles, title="dataset", loc="outside right upper", frameon=False)
    fig.suptitle(f"{task}: bars mean ± sd over seeds, points one seed each", fontsize=11)
    save_figure(fig, path)


def plot_curves(curves, path: str | Path) -> None:
    """Learning curves of one task: a panel per (dataset, method, phase), a line per seed, the
    validation criterion (the training loss where a run evaluates none) against optimizer steps; a
    run the convergence check flags is drawn dashed. ``curves``: ``(task, dataset, method, seed,
    curves.csv)`` records (:func:`scfmbench.curves.read_curves`)."""
    from scfmbench.curves import convergence, read_curves

    panels: dict[tuple, list] = {}
    for _, dataset, method, seed, file in curves:
        frame = read_curves(file)
        flags = convergence(frame).set_index("phase")["converged"]
        for phase, g in frame.groupby("phase", sort=False):
            panels.setdefault((dataset, method, phase), []).append((seed, g, bool(flags[phase])))
    if not panels:
        save_figure(empty_figure(NO_RESULTS), path)
        return
    ncol = min(4, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig = Figure(figsize=(3.4 * ncol, 2.6 * nrow), layout="constrained")
    palette = sns.color_palette("colorblind", max(len(v) for v in panels.values()))
    for i, ((dataset, method, phase), runs) in enumerate(sorted(panels.items())):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        for j, (seed, g, converged) in enumerate(sorted(runs, key=lambda r: r[0])):
            use_valid = g["valid"].notna().any()
            g = g[g["valid"].notna()] if use_valid else g
            ax.plot(
                g["step"],
                g["valid"] if use_valid else g["train_loss"],
                marker=".",
                color=palette[j],
                linestyle="-" if converged else "--",
                label=f"seed {seed}" + ("" if converged else " (not converged)"),
            )
            ax.set_ylabel(g["criterion"].iloc[0] if use_valid else "train loss", fontsize=8)
        ax.set_title(f"{dataset} / {method}" + ("" if phase == "train" else f" ({phase})"), fontsize=8)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    save_figure(fig, path)
