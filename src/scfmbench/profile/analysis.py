"""Profile report: every point in one table, fitted scaling exponents, time and memory figures.

Outputs of :func:`write_profile_report` (all atomic)::

    profile.csv            every point (measure.COLUMNS), sorted by mechanism, pass, batch, L
    profile_scaling.csv    per (mechanism, pass, batch): fitted exponents of time and memory in L
    profile_scaling.md     the exponents, then time and peak memory per L (GenoHoption Fig. 4c as numbers)
    figures/profile_time.png     time vs L, log-log, one line per mechanism, a panel per pass
    figures/profile_memory.png   log peak memory vs L

The scaling exponent is the least-squares slope of log(y) on log(L) over the points with status
``ok`` (y = median time, or peak memory above ``min_memory_mb``): 2 for a cost growing as L^2,
1 for linear. It describes the measured range only; at short lengths fixed overheads flatten it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scfmbench._io import atomic_path, write_csv, write_text
from scfmbench.profile.measure import COLUMNS, PASSES, TEXT_COLUMNS

__all__ = [
    "SCALING_COLUMNS",
    "fit_exponent",
    "plot_profile",
    "read_points",
    "scaling_markdown",
    "scaling_table",
    "write_profile_report",
]

SCALING_COLUMNS = (
    "mechanism",
    "pass",
    "batch",
    "time_exponent",
    "time_points",
    "memory_exponent",
    "memory_points",
    "L_min",
    "L_max",
    "failed",
)
MIN_MEMORY_MB = 1.0  # CPU: below ~1 MB the resident-set probe's page-level resolution dominates
_GROUP = ["mechanism", "pass", "batch"]


def read_points(paths) -> pd.DataFrame:
    """Concatenate point CSVs (one row each from ``profile_point``), sorted; pass in PASSES order."""
    frames = [
        pd.read_csv(
            p,
            dtype={c: str for c in TEXT_COLUMNS},
            keep_default_na=False,
            na_values={c: ["", "nan", "NaN"] for c in COLUMNS if c not in TEXT_COLUMNS},
        )
        for p in paths
    ]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    order = {p: i for i, p in enumerate(PASSES)}
    df = df.sort_values(
        ["mechanism", "pass", "batch", "L"],
        key=lambda s: s.map(order) if s.name == "pass" else s,
        kind="stable",
        ignore_index=True,
    )
    return df[list(COLUMNS)]


def fit_exponent(lengths, values) -> float:
    """Slope of log(values) on log(lengths) (NaN with fewer than two distinct lengths)."""
    x, y = np.asarray(lengths, dtype=float), np.asarray(values, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    if np.unique(x).size < 2:
        return math.nan
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def scaling_table(df: pd.DataFrame, *, min_memory_mb: float = MIN_MEMORY_MB) -> pd.DataFrame:
    """One row per (mechanism, pass, batch): time and memory exponents over the ``ok`` points,
    how many points each fit used, the L range of the ok points and the failed points."""
    rows = []
    for (mechanism, mode, batch), g in df.groupby(_GROUP, sort=False):
        ok = g[g["status"] == "ok"]
        mem = ok[ok["peak_mem_mb"] >= min_memory_mb]
        failed = g[g["status"] != "ok"]
        rows.append(
            dict(
                mechanism=mechanism,
                **{"pass": mode},
                batch=int(batch),
                time_exponent=fit_exponent(ok["L"], ok["time_median_s"]),
                time_points=int(ok["time_median_s"].gt(0).sum()),
                memory_exponent=fit_exponent(mem["L"], mem["peak_mem_mb"]),
                memory_points=len(mem),
                L_min=int(ok["L"].min()) if len(ok) else 0,
                L_max=int(ok["L"].max()) if len(ok) else 0,
                failed=", ".join(f"L={int(r.L)} {r.status}" for r in failed.itertuples()),
            )
        )
    return pd.DataFrame(rows, columns=list(SCALING_COLUMNS))


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}g}"


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _by_length(df: pd.DataFrame, value: str, digits: int) -> pd.DataFrame:
    """Mechanisms x L, ``value`` where ok, the status where not."""
    cell = df.apply(lambda r: _fmt(r[value], digits) if r["status"] == "ok" else r["status"], axis=1)
    wide = (
        df.assign(cell=cell)
        .pivot_table(index=_GROUP, columns="L", values="cell", aggfunc="first", sort=False)
        .fillna("")
    )
    wide.columns = [f"L={c}" for c in wide.columns]
    return wide.reset_index()


def scaling_markdown(df: pd.DataFrame, scaling: pd.DataFrame) -> str:
    """The exponents table, then time and peak memory per L."""
    shown = scaling.assign(
        time_exponent=scaling["time_exponent"].map(lambda v: _fmt(v, 3)),
        memory_exponent=scaling["memory_exponent"].map(lambda v: _fmt(v, 3)),
    )
    settings = ""
    if len(df):
        first = df.iloc[0]
        settings = (
            (
                f"Device {first['device']} ({first['device_name']}), {first['dtype']}, heads {first['heads']} x dim "
                f"{first['dim']}, torch {first['torch_version']}"
            )
            + (f", CUDA {first['cuda_version']}" if first["cuda_version"] else "")
            + ".\n\n"
        )
    parts = [
        "# Memory and speed profile\n",
        settings,
        "## Scaling exponents (slope of log y on log L over the ok points)\n",
        _markdown(shown),
        "",
        "## Median time per pass (s)\n",
        _markdown(_by_length(df, "time_median_s", 3)),
        "",
        "## Peak memory over the baseline (MB)\n",
        _markdown(_by_length(df, "peak_mem_mb", 3)),
        "",
    ]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# figures


def _save(fig, path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")


def plot_profile(df: pd.DataFrame, value: str, path, *, ylabel: str, log_x: bool) -> None:
    """One panel per (batch, pass): ``value`` against L, a line per mechanism, log y. Mechanisms
    with failed points say so in the legend (e.g. ``gat (oom from L=2048)``)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    mechanisms = list(dict.fromkeys(df["mechanism"]))
    panels = [
        (b, p) for b in sorted(df["batch"].unique()) for p in PASSES if ((df["batch"] == b) & (df["pass"] == p)).any()
    ]
    fig = Figure(figsize=(5.2 * max(len(panels), 1) + 2.6, 4.2))
    if not panels:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no profile points configured", ha="center", va="center", transform=ax.transAxes)
        _save(fig, path)
        return
    palette = sns.color_palette("tab20", 20)
    colors = dict(zip(mechanisms, (palette[0::2] + palette[1::2]) * 2))  # strong colours first
    markers = dict(zip(mechanisms, "osD^v<>pPX*hH8d" * 2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (batch, mode) in zip(axes, panels):
        sub = df[(df["batch"] == batch) & (df["pass"] == mode)]
        for mech in mechanisms:
            g = sub[sub["mechanism"] == mech].sort_values("L")
            ok = g[(g["status"] == "ok") & (g[value] > 0)]
            bad = g[g["status"] != "ok"]
            label = mech + (f" ({bad['status'].iloc[0]} from L={int(bad['L'].min())})" if len(bad) else "")
            if len(ok):
                ax.plot(ok["L"], ok[value], marker=markers[mech], ms=4, lw=1.3, color=colors[mech], label=label)
            elif len(g):
                ax.plot([], [], marker=markers[mech], color=colors[mech], label=label)
        ax.set_yscale("log")
        if log_x:
            ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(ylabel)
        ax.set_title(
            f"{mode} (batch {batch})" if mode == "forward" else f"forward + backward (batch {batch})", fontsize=10
        )
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    _save(fig, path)


def write_profile_report(point_paths, *, csv, scaling_csv, scaling_md, time_png, memory_png) -> pd.DataFrame:
    """Gather the points and write every profile output (see the module docstring); returns the
    scaling table."""
    df = read_points(list(point_paths))
    write_csv(df, csv)
    scaling = scaling_table(df)
    write_csv(scaling, scaling_csv)
    write_text(scaling_markdown(df, scaling), scaling_md)
    plot_profile(df, "time_median_s", time_png, ylabel="median time per pass (s)", log_x=True)
    plot_profile(df, "peak_mem_mb", memory_png, ylabel="peak memory over baseline (MB)", log_x=False)
    return scaling
