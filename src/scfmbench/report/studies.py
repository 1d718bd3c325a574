"""The annotation studies beside the main grid: few-shot curves (GenoHoption Fig. 4a,b) and the
hyper-parameter sensitivity of the diffusion (Fig. 5), as tidy tables, Markdown, HTML and figures.

Both studies are ordinary annotation runs with derived names (:mod:`scfmbench.config`):

- few-shot runs are *datasets* ``{dataset}-fs{fraction}`` (:func:`~scfmbench.config.parse_dataset`);
  the fraction-1.0 point of a curve is the main grid's run of the same method on ``{dataset}``;
- sensitivity runs are *methods* ``{method}.{option}{value}`` (option alpha, t or k;
  :func:`~scfmbench.config.parse_transformer`); the default-value point of a curve is the base
  method's own run on the same dataset, unless the grid itself has a run at that value.

:func:`main_grid` removes both kinds of rows, so the main annotation table, figure and paper table
show only the configured datasets x methods (the quality check still sees every record).

Statistics follow :mod:`scfmbench.report.tables`: mean and sample std (ddof=1) over the seeds with
a finite value, ``n`` the number of those seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from scfmbench._io import markdown_cell, write_csv, write_text
from scfmbench.config import SENSITIVITY_KEYS, parse_dataset
from scfmbench.report.figures import empty_figure, save_figure
from scfmbench.report.html import markdown_html
from scfmbench.report.tables import format_cell

STUDY_METRICS = ("accuracy", "macro_f1")
#: The paper's kernel defaults (GenoHoption: alpha 0.25, t 5, K 6).
PAPER_DEFAULTS: dict[str, float] = {"alpha": 0.25, "t": 5.0, "k": 6.0}
FEWSHOT_COLUMNS = ["dataset", "method", "fraction", "metric", "mean", "std", "n", "source"]
SENSITIVITY_COLUMNS = ["dataset", "method", "option", "option_value", "metric", "mean", "std", "n", "default", "source"]
#: ``source`` values: where a point's records come from.
FEWSHOT_RUN, MAIN_GRID_RUN = "few-shot run", "main grid run"
SENSITIVITY_RUN, BASE_RUN = "sensitivity run", "base method run"
NO_FEWSHOT = "no few-shot runs configured"
NO_SENSITIVITY = "no sensitivity runs configured"
LABELS = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "alpha": "alpha (PPR restart probability)",
    "t": "t (heat-kernel time)",
    "k": "K (diffusion steps / terms)",
}


def is_fewshot_dataset(name: str) -> bool:
    return parse_dataset(str(name))[1] is not None


def sensitivity_override(method: str) -> tuple[str, str, float] | None:
    """``'scgpt-genohoption-p.alpha0.1'`` -> ``('scgpt-genohoption-p', 'alpha', 0.1)``; None otherwise."""
    if "." not in str(method):  # only a sensitivity suffix puts a '.' in a method id
        return None
    from scfmbench.config import parse_transformer  # imports the kernels (torch): only when needed

    spec = parse_transformer(str(method))
    if spec is None or spec.override is None:
        return None
    key, value = spec.override
    return spec.base, key, value


def main_grid(metrics: pd.DataFrame) -> pd.DataFrame:
    """``metrics`` without few-shot datasets and sensitivity methods (index reset)."""
    if metrics.empty:
        return metrics.reset_index(drop=True)
    fewshot = metrics["dataset"].map({d: is_fewshot_dataset(d) for d in metrics["dataset"].unique()})
    sens = metrics["method"].map({m: sensitivity_override(m) is not None for m in metrics["method"].unique()})
    return metrics[~(fewshot.astype(bool) | sens.astype(bool))].reset_index(drop=True)


def _stats(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    df = df.assign(value=pd.to_numeric(df["value"], errors="coerce"))
    return df.groupby(keys, sort=True)["value"].agg(mean="mean", std="std", n="count").reset_index()


def _study_rows(metrics: pd.DataFrame, task: str, metric_names) -> pd.DataFrame:
    return metrics[(metrics["task"] == task) & metrics["metric"].isin(metric_names)]


# ---------------------------------------------------------------------------------------------
# few-shot


def fewshot_table(metrics: pd.DataFrame, *, task: str = "annotation", metric_names=STUDY_METRICS) -> pd.DataFrame:
    """One row per (base dataset, method, fraction, metric): :data:`FEWSHOT_COLUMNS`.

    Methods are those with few-shot runs on the base dataset; their fraction-1.0 point is the main
    grid's run of the same method on the base dataset when there is one (``source`` says which).
    """
    rows = _study_rows(metrics, task, metric_names)
    if rows.empty:
        return pd.DataFrame(columns=FEWSHOT_COLUMNS)
    parsed = rows["dataset"].map({d: parse_dataset(str(d)) for d in rows["dataset"].unique()})
    fraction = parsed.map(lambda p: p[1])
    fs = rows[fraction.notna()].assign(
        dataset=parsed[fraction.notna()].map(lambda p: p[0]), fraction=fraction[fraction.notna()].astype(float)
    )
    if fs.empty:
        return pd.DataFrame(columns=FEWSHOT_COLUMNS)
    fs = fs[fs["method"].map(lambda m: sensitivity_override(m) is None)]
    pairs = set(zip(fs["dataset"], fs["method"]))
    full = rows[fraction.isna()]
    full = full[[(d, m) in pairs for d, m in zip(full["dataset"], full["method"])]].assign(fraction=1.0)
    out = pd.concat(
        [
            _stats(fs, ["dataset", "method", "fraction", "metric"]).assign(source=FEWSHOT_RUN),
            _stats(full, ["dataset", "method", "fraction", "metric"]).assign(source=MAIN_GRID_RUN),
        ],
        ignore_index=True,
    )
    out["n"] = out["n"].astype(int)
    return out.sort_values(["dataset", "metric", "method", "fraction"], ignore_index=True)[FEWSHOT_COLUMNS]


def _value_label(value: float) -> str:
    return f"{value:g}"


def _pivot_markdown(
    block: pd.DataFrame, column: str, header: Callable[[float], str], mark: Callable[[tuple], str]
) -> str:
    """Rows (method, metric), one column per value of ``column``, cells mean ± std."""
    values = sorted(block[column].unique())
    n_max = int(block["n"].max()) if len(block) else None
    lines = [
        "| method | metric | " + " | ".join(header(v) for v in values) + " |",
        "|:---|:---|" + "---:|" * len(values),
    ]
    for (method, metric), g in block.groupby(["method", "metric"], sort=True):
        by_value = {v: r for v, r in zip(g[column], g.itertuples(index=False))}
        cells = []
        for v in values:
            r = by_value.get(v)
            if r is None:
                cells.append("–")
                continue
            cells.append(format_cell(r.mean, r.std, r.n, unit_scale=True, n_max=n_max) + mark(r))
        lines.append(f"| {markdown_cell(method)} | {LABELS.get(metric, metric)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fewshot_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return f"_{NO_FEWSHOT}_\n"
    parts = []
    for dataset, block in table.groupby("dataset", sort=True):
        parts.append(
            f"## {dataset}\n\n"
            + _pivot_markdown(
                block, "fraction", lambda f: "1 (main grid)" if f == 1.0 else _value_label(f), lambda r: ""
            )
        )
    legend = (
        "Mean ± standard deviation over seeds of each method trained on a fraction of the training cells "
        "(validation and test cells unchanged); the column `1 (main grid)` is the method's run on the full "
        "training set in the main grid. `–`: not run; `(n=k)`: only k seeds with a finite value.\n"
    )
    return "\n".join(parts) + "\n" + legend


# ---------------------------------------------------------------------------------------------
# sensitivity


def kernel_defaults(method: str, config: Mapping | None = None) -> dict[str, float]:
    """The alpha / t / k the base ``method`` runs with: the config's ``params.{backbone}.kernel_config.
    {attention}`` entry where it sets one, else the kernel's own default (GenoHoption's 0.25, 5, 6)."""
    from scfmbench.config import parse_transformer

    spec = parse_transformer(method)
    if spec is None:
        return dict(PAPER_DEFAULTS)
    import inspect

    from scfmbench.models.attention import KERNELS

    params = inspect.signature(KERNELS[spec.attention].__init__).parameters
    out = {
        k: float(params[k].default)
        for k in SENSITIVITY_KEYS
        if k in params and params[k].default is not inspect.Parameter.empty
    }
    overrides = (((config or {}).get("params") or {}).get(spec.backbone) or {}).get("kernel_config") or {}
    for k, v in (overrides.get(spec.attention) or {}).items():
        if k in SENSITIVITY_KEYS:
            out[k] = float(v)
    return {**PAPER_DEFAULTS, **out}


def sensitivity_table(
    metrics: pd.DataFrame,
    *,
    task: str = "annotation",
    metric_names=STUDY_METRICS,
    defaults: Callable[[str], Mapping[str, float]] | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per (dataset, base method, option, option_value, metric): :data:`SENSITIVITY_COLUMNS`.

    For every option a base method was varied in on a dataset, the base method's own run on that
    dataset is added as the point at its default value (``defaults``: a mapping option -> value, or a
    function base method -> mapping; :data:`PAPER_DEFAULTS` when None), ``source`` ``base method
    run``, unless the grid has a run at that value itself (then that run is the point: the two would
    be the same configuration, and pooling them would count each seed twice). ``default`` flags the
    points at the default value.
    """
    if defaults is None:
        defaults_of = lambda _m: PAPER_DEFAULTS  # noqa: E731
    elif callable(defaults):
        defaults_of = defaults
    else:
        defaults_of = lambda _m: defaults  # noqa: E731
    rows = _study_rows(metrics, task, metric_names)
    parsed = {m: sensitivity_override(m) for m in rows["method"].unique()}
    sens = rows[rows["method"].map(lambda m: parsed[m] is not None).astype(bool)]
    if sens.empty:
        return pd.DataFrame(columns=SENSITIVITY_COLUMNS)
    sens = sens.assign(
        option=sens["method"].map(lambda m: parsed[m][1]),
        option_value=sens["method"].map(lambda m: parsed[m][2]),
        method=sens["method"].map(lambda m: parsed[m][0]),
    )
    keys = ["dataset", "method", "option", "option_value", "metric"]
    out = [_stats(sens, keys).assign(source=SENSITIVITY_RUN)]
    for (dataset, base, option), g in sens.groupby(["dataset", "method", "option"], sort=True):
        default = float(defaults_of(base)[option])
        if np.isclose(g["option_value"].astype(float), default).any():
            continue
        own = rows[(rows["dataset"] == dataset) & (rows["method"] == base) & rows["metric"].isin(set(g["metric"]))]
        if own.empty:
            continue
        out.append(_stats(own.assign(option=option, option_value=default), keys).assign(source=BASE_RUN))
    table = pd.concat(out, ignore_index=True)
    table["option_value"] = table["option_value"].astype(float)
    table["n"] = table["n"].astype(int)
    table["default"] = [
        bool(np.isclose(v, float(defaults_of(m)[o])))
        for m, o, v in zip(table["method"], table["option"], table["option_value"])
    ]
    order = {k: i for i, k in enumerate(SENSITIVITY_KEYS)}
    table["_o"] = table["option"].map(order)
    table = table.sort_values(["dataset", "_o", "metric", "method", "option_value"], ignore_index=True)
    return table[SENSITIVITY_COLUMNS]


def sensitivity_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return f"_{NO_SENSITIVITY}_\n"
    parts = []
    order = {k: i for i, k in enumerate(SENSITIVITY_KEYS)}
    for (dataset, option), block in sorted(
        table.groupby(["dataset", "option"]), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))
    ):
        defaults = set(block.loc[block["default"], "option_value"])
        parts.append(
            f"## {dataset}: {LABELS.get(option, option)}\n\n"
            + _pivot_markdown(
                block,
                "option_value",
                lambda v, defaults=defaults: _value_label(v) + (" (default)" if v in defaults else ""),
                lambda r: " *" if r.source == BASE_RUN else "",
            )
        )
    legend = (
        "Mean ± standard deviation over seeds of each method re-run with one diffusion option changed. "
        "`*`: the base method's own run (the main grid's configuration) as the default-value point. "
        "`–`: not run; `(n=k)`: only k seeds with a finite value.\n"
    )
    return "\n".join(parts) + "\n" + legend


# ---------------------------------------------------------------------------------------------
# files


def study_paths(outdir: str | Path) -> dict[str, Path]:
    """Every file :func:`write_studies` writes, by name."""
    outdir = Path(outdir)
    paths = {}
    for study in ("fewshot", "sensitivity"):
        for ext in ("md", "csv", "html"):
            paths[f"{study}_{ext}"] = outdir / f"{study}_table.{ext}"
        paths[f"{study}_png"] = outdir / "figures" / f"{study}.png"
    return paths


def study_defaults(config: Mapping) -> dict[str, dict[str, float]]:
    """:func:`kernel_defaults` of every method of the config's ``sensitivity.methods``."""
    return {m: kernel_defaults(m, config) for m in (config.get("sensitivity") or {}).get("methods", [])}


# ---------------------------------------------------------------------------------------------
# the studies' figures: few-shot curves and sensitivity curves


def _curve(ax, block: pd.DataFrame, x: str, color, label: str, *, special: pd.Series | None = None) -> None:
    """One mean ± sd line over ``x``; points where ``special`` is true get a hollow star on top."""
    block = block.sort_values(x)
    yerr = block["std"].astype(float).fillna(0.0).to_numpy()
    ax.errorbar(
        block[x].astype(float),
        block["mean"].astype(float),
        yerr=yerr,
        color=color,
        label=label,
        marker="o",
        markersize=5,
        linewidth=1.5,
        capsize=3,
        elinewidth=1,
    )
    if special is not None and special.loc[block.index].any():
        sel = block[special.loc[block.index]]
        ax.plot(
            sel[x].astype(float),
            sel["mean"].astype(float),
            linestyle="none",
            marker="*",
            markersize=13,
            markerfacecolor="none",
            markeredgecolor=color,
            markeredgewidth=1.3,
        )


def _methods_legend(fig: Figure, palette: dict, starred: str | None = None) -> None:
    """One entry per method, plus a star entry labelled ``starred`` (the curves' special points)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", label=m) for m, c in palette.items()]
    if starred:
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="*",
                markersize=11,
                markerfacecolor="none",
                markeredgecolor="0.3",
                label=starred,
            )
        )
    fig.legend(handles=handles, title="method", loc="outside right upper", frameon=False)


def plot_fewshot(table: pd.DataFrame, path: str | Path) -> None:
    """Few-shot curves from :func:`fewshot_table`: a panel row per base
    dataset, a column per metric (accuracy, macro F1), a line per method (mean ± sd over seeds) against
    the fraction of training cells; the fraction-1.0 point (the main grid's run) is starred."""
    if table.empty:
        save_figure(empty_figure(NO_FEWSHOT), path)
        return
    datasets = sorted(table["dataset"].unique())
    metric_names = [m for m in STUDY_METRICS if m in set(table["metric"])] + sorted(
        set(table["metric"]) - set(STUDY_METRICS)
    )
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
    save_figure(fig, path)


def plot_sensitivity(table: pd.DataFrame, path: str | Path) -> None:
    """Sensitivity curves from :func:`sensitivity_table`: a panel column per
    option (alpha, t, K), a row per (dataset, metric) with macro F1 first, a line per base method
    (mean ± sd over seeds) against the option's value; default-value points are starred."""

    if table.empty:
        save_figure(empty_figure(NO_SENSITIVITY), path)
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
    save_figure(fig, path)


def write_studies(
    metrics: pd.DataFrame | str | Path,
    out: Mapping[str, str | Path] | object,
    *,
    defaults: Mapping[str, Mapping[str, float]] | None = None,
    config: Mapping | None = None,
) -> None:
    """Write the few-shot and sensitivity tables (Markdown, CSV, HTML) and figures.

    ``out``: a mapping or an object with the names of :func:`study_paths` as keys / attributes.
    ``defaults``: base method -> its alpha / t / k (:func:`study_defaults`); a method not in it gets
    :func:`kernel_defaults` under ``config``. Always writes every file: with no runs the tables have
    only their header and the figures say so.
    """
    if not isinstance(metrics, pd.DataFrame):
        metrics = pd.read_csv(metrics)
    get = (lambda k: out[k]) if isinstance(out, Mapping) else (lambda k: getattr(out, k))
    cache: dict[str, dict[str, float]] = {
        m: {**PAPER_DEFAULTS, **{k: float(v) for k, v in d.items()}} for m, d in (defaults or {}).items()
    }

    def defaults_of(method: str) -> dict[str, float]:
        if method not in cache:
            cache[method] = kernel_defaults(method, config)
        return cache[method]

    fs = fewshot_table(metrics)
    md = "# Few-shot annotation (GenoHoption Fig. 4a,b)\n\n" + fewshot_markdown(fs)
    write_text(md, get("fewshot_md"))
    write_csv(fs, get("fewshot_csv"))
    write_text(markdown_html(md, title="Few-shot annotation"), get("fewshot_html"))
    plot_fewshot(fs, get("fewshot_png"))

    sens = sensitivity_table(metrics, defaults=defaults_of)
    md = "# Hyper-parameter sensitivity (GenoHoption Fig. 5)\n\n" + sensitivity_markdown(sens)
    write_text(md, get("sensitivity_md"))
    write_csv(sens, get("sensitivity_csv"))
    write_text(markdown_html(md, title="Hyper-parameter sensitivity"), get("sensitivity_html"))
    plot_sensitivity(sens, get("sensitivity_png"))


__all__ = [
    "FEWSHOT_COLUMNS",
    "PAPER_DEFAULTS",
    "SENSITIVITY_COLUMNS",
    "fewshot_markdown",
    "fewshot_table",
    "is_fewshot_dataset",
    "kernel_defaults",
    "main_grid",
    "plot_fewshot",
    "plot_sensitivity",
    "sensitivity_markdown",
    "sensitivity_override",
    "sensitivity_table",
    "study_defaults",
    "study_paths",
    "write_studies",
]
