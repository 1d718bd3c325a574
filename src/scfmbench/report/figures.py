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


def _save(fig: Figure, path: str | Path, *, dpi: int = 150) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def _empty_figure(message: str) -> Figure:
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
        _save(_empty_figure(NO_RESULTS), path)
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
        common = dict(data=sub, x="method", y="value", hue="dataset", order=methods,
                      hue_order=hue_order, palette=palette, ax=ax, legend=False)
        if not sub.empty:
            # With the same hue levels, barplot and stripplot(dodge=True) use the same offsets.
            sns.barplot(**common, errorbar="sd", alpha=0.45, capsize=0.15, err_kws={"linewidth": 1.2})
            sns.stripplot(**common, dodge=True, jitter=0.08, size=4, edgecolor="black", linewidth=0.4)
        else:
            ax.set_xticks(range(len(methods)), methods)
            ax.set_xlim(-0.5, len(methods) - 0.5)
        for i, method in enumerate(methods):
            if method not in set(sub["method"]):
                ax.text(i, 0.02, "n/a", ha="center", va="bottom", fontsize=8, color="0.4",
                        transform=ax.get_xaxis_transform())
        direction = "higher" if higher_is_better(metric) else "lower"
        ax.set_title(f"{metric} ({direction} is better)", fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel(metric)
        ax.tick_params(axis="x", labelrotation=40)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(metric_names):]:
        ax.set_axis_off()

    handles = [Patch(facecolor=palette[d], edgecolor="black", linewidth=0.4, label=d) for d in datasets]
    fig.legend(handles=handles, title="dataset", loc="outside right upper", frameon=False)
    fig.suptitle(f"{task}: bars mean ± sd over seeds, points one seed each", fontsize=11)
    _save(fig, path)


# ---------------------------------------------------------------------------------------------
# the annotation studies (scfmbench.report.studies): few-shot curves and sensitivity curves

def _curve(ax, block: pd.DataFrame, x: str, color, label: str, *, special: pd.Series | None = None) -> None:
    """One mean ± sd line over ``x``; points where ``special`` is true get a hollow star on top."""
    block = block.sort_values(x)
    yerr = block["std"].astype(float).fillna(0.0).to_numpy()
    ax.errorbar(block[x].astype(float), block["mean"].astype(float), yerr=yerr, color=color, label=label,
                marker="o", markersize=5, linewidth=1.5, capsize=3, elinewidth=1)
    if special is not None and special.loc[block.index].any():
        sel = block[special.loc[block.index]]
        ax.plot(sel[x].astype(float), sel["mean"].astype(float), linestyle="none", marker="*", markersize=13,
                markerfacecolor="none", markeredgecolor=color, markeredgewidth=1.3)


def _methods_legend(fig: Figure, palette: dict, starred: str | None = None) -> None:
    """One entry per method, plus a star entry labelled ``starred`` (the curves' special points)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", label=m) for m, c in palette.items()]
    if starred:
        handles.append(Line2D([], [], linestyle="none", marker="*", markersize=11, markerfacecolor="none", markeredgecolor="0.3", label=starred))
    fig.legend(handles=handles, title="method", loc="outside right upper", frameon=False)


def plot_fewshot(table: pd.DataFrame, path: str | Path) -> None:
    """Few-shot curves from :func:`scfmbench.report.studies.fewshot_table`: a panel row per base
    dataset, a column per metric (accuracy, macro F1), a line per method (mean ± sd over seeds) against
    the fraction of training cells; the fraction-1.0 point (the main grid's run) is starred."""
    from scfmbench.report.studies import LABELS, MAIN_GRID_RUN, NO_FEWSHOT, STUDY_METRICS

    if table.empty:
        _save(_empty_figure(NO_FEWSHOT), path)
        return
    datasets = sorted(table["dataset"].unique())
    metric_names = [m for m in STUDY_METRICS if m in set(table["metric"])] + sorted(set(table["metric"]) - set(STUDY_METRICS))
    methods = sorted(table["method"].unique())
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    fig = Figure(figsize=(4.2 * len(metric_names) + 2.2, 3.3 * len(datasets) + 0.7), layout="constrained")
    axes = fig.subplots(len(datasets), len(metric_names), squeeze=False)
    special = table["source"] == MAIN_GRID_RUN
    for r, dataset in enumerate(datasets):
        for c, metric in enumerate(metric_names):
            ax = axes[r, c]
            sub = table[(table["dataset"] == dataset) & (table["metric"] == metric)]
            for method, block in sub.groupby("method", sort=True):
                _curve(ax, block, "fraction", palette[method], method, special=special)
            fractions = sorted(sub["fraction"].unique())
            ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
            ax.set_xlim(0, 1.05)
            ax.set_title(f"{dataset}: {LABELS.get(metric, metric)}", fontsize=10)
            ax.set_xlabel("fraction of training cells")
            ax.set_ylabel(LABELS.get(metric, metric))
            ax.grid(alpha=0.3)
    _methods_legend(fig, palette, "1.0: main grid run" if special.any() else None)
    fig.suptitle("Few-shot annotation: mean ± sd over seeds against the fraction of training cells", fontsize=11)
    _save(fig, path)


def plot_sensitivity(table: pd.DataFrame, path: str | Path) -> None:
    """Sensitivity curves from :func:`scfmbench.report.studies.sensitivity_table`: a panel column per
    option (alpha, t, K), a row per (dataset, metric) with macro F1 first, a line per base method
    (mean ± sd over seeds) against the option's value; default-value points are starred."""
    from scfmbench.config import SENSITIVITY_KEYS
    from scfmbench.report.studies import LABELS, NO_SENSITIVITY, STUDY_METRICS

    if table.empty:
        _save(_empty_figure(NO_SENSITIVITY), path)
        return
    options = [k for k in SENSITIVITY_KEYS if k in set(table["option"])]
    order = ["macro_f1", "accuracy"] + [m for m in STUDY_METRICS if m not in ("macro_f1", "accuracy")]
    metric_names = [m for m in order if m in set(table["metric"])] + sorted(set(table["metric"]) - set(order))
    rows = [(d, m) for d in sorted(table["dataset"].unique()) for m in metric_names]
    methods = sorted(table["method"].unique())
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    fig = Figure(figsize=(3.9 * len(options) + 2.6, 3.1 * len(rows) + 0.7), layout="constrained")
    axes = fig.subplots(len(rows), len(options), squeeze=False)
    special = table["default"].astype(bool)
    for r, (dataset, metric) in enumerate(rows):
        for c, option in enumerate(options):
            ax = axes[r, c]
            sub = table[(table["dataset"] == dataset) & (table["metric"] == metric) & (table["option"] == option)]
            for method, block in sub.groupby("method", sort=True):
                _curve(ax, block, "option_value", palette[method], method, special=special)
            if sub.empty:
                ax.text(0.5, 0.5, "not varied", ha="center", va="center", color="0.4", transform=ax.transAxes)
            else:
                values = sorted(sub["option_value"].unique())
                ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.set_title(f"{dataset}: {LABELS.get(metric, metric)} vs {'K' if option == 'k' else option}", fontsize=10)
            ax.set_xlabel(LABELS.get(option, option))
            ax.set_ylabel(LABELS.get(metric, metric))
            ax.grid(alpha=0.3)
    _methods_legend(fig, palette, "default value" if special.any() else None)
    fig.suptitle("Hyper-parameter sensitivity: mean ± sd over seeds against one diffusion option", fontsize=11)
    _save(fig, path)


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
        _save(_empty_figure(NO_RESULTS), path)
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
            ax.plot(g["step"], g["valid"] if use_valid else g["train_loss"], marker=".", color=palette[j], linestyle="-" if converged else "--",
                    label=f"seed {seed}" + ("" if converged else " (not converged)"))
            ax.set_ylabel(g["criterion"].iloc[0] if use_valid else "train loss", fontsize=8)
        ax.set_title(f"{dataset} / {method}" + ("" if phase == "train" else f" ({phase})"), fontsize=8)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    _save(fig, path)
