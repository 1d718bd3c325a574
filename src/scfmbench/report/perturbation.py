"""The perturbation table and figure in the layout of GenoHoption's Fig. 3: per test subgroup and
metric, each method's mean ± sd over seeds (table) and a point per seed (figure). Delta metrics
lead (plain Pearson is ~0.99 for any predictor)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scfmbench._io import write_csv, write_text
from scfmbench.perturbation.metrics import ALL, DELTA_METRICS, split_metric
from scfmbench.perturbation.split import SUBGROUPS
from scfmbench.results import read_metrics

#: The table's and figure's metrics, delta first; the rest stay in metrics.csv.
SHOWN = DELTA_METRICS[:2] + ("pearson_delta_top20_de_non_dropout", "mse_de", "pearson")
CONTROLS = ("no_change", "train_mean", "additive", "linear", "oracle")


def perturbation_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    """The perturbation records with ``base`` metric and ``subgroup`` columns."""
    df = metrics[metrics["task"] == "perturbation"].copy()
    parts = [split_metric(m) for m in df["metric"]]
    df["base"] = [p[0] for p in parts]
    df["subgroup"] = [p[1] for p in parts]
    return df


def summary(metrics: pd.DataFrame, shown=SHOWN) -> pd.DataFrame:
    """Tidy: dataset, subgroup, metric, method, mean, sd, n (seeds), ordered for reading."""
    df = perturbation_frame(metrics)
    df = df[df["base"].isin(shown)]
    g = df.groupby(["dataset", "subgroup", "base", "method"])["value"]
    out = (
        pd.concat([g.mean().rename("mean"), g.std(ddof=1).rename("sd"), g.count().rename("n")], axis=1)
        .reset_index()
        .rename(columns={"base": "metric"})
    )
    order = {s: i for i, s in enumerate((ALL, *SUBGROUPS))}
    out["_s"], out["_m"] = out["subgroup"].map(order), out["metric"].map({m: i for i, m in enumerate(shown)})
    return out.sort_values(["dataset", "_s", "_m", "method"]).drop(columns=["_s", "_m"]).reset_index(drop=True)


def _cell(mean: float, sd: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{mean:.3f}"


def to_markdown(tidy: pd.DataFrame) -> str:
    if tidy.empty:
        return "## perturbation\n\nno results configured\n"
    lines = [
        "## perturbation",
        "",
        "Mean ± sd over seeds of the mean over test conditions (GEARS metrics, `results/perturbation`). "
        "Delta metrics first: prediction and truth minus the control mean. Controls: "
        + ", ".join(f"`{c}`" for c in CONTROLS)
        + ".",
    ]
    lines.append(
        "Column `seeds`: how many seeds stand behind the row (a subgroup that a seed's split did not draw has fewer); "
        "a subgroup no seed drew is marked absent."
    )
    for dataset, d in tidy.groupby("dataset", sort=False):
        metrics = list(dict.fromkeys(d["metric"]))
        methods = sorted(
            d["method"].unique(), key=lambda m: (m not in CONTROLS, CONTROLS.index(m) if m in CONTROLS else 0, m)
        )
        seeds = {m: int(d.loc[(d["method"] == m) & (d["subgroup"] == ALL), "n"].max())
                 if ((d["method"] == m) & (d["subgroup"] == ALL)).any() else 0
                 for m in methods}  # fmt: skip
        present = list(dict.fromkeys(d["subgroup"]))
        for subgroup in [g for g in (ALL, *SUBGROUPS) if g in present] + [
            g for g in present if g not in (ALL, *SUBGROUPS)
        ]:
            s = d[d["subgroup"] == subgroup]
            lines += [
                "",
                f"### {dataset}: {subgroup}",
                "",
                "| method | seeds | " + " | ".join(metrics) + " |",
                "|---|---:|" + "---:|" * len(metrics),
            ]
            for m in methods:
                row = s[s["method"] == m].set_index("metric")
                n = int(row["n"].max()) if len(row) else 0
                lines.append(
                    f"| {m} | {n}/{seeds[m]} | "
                    + " | ".join(_cell(row.at[k, "mean"], row.at[k, "sd"]) if k in row.index else "–" for k in metrics)
                    + " |"
                )
        for subgroup in (g for g in SUBGROUPS if g not in present):
            lines += [
                "",
                f"### {dataset}: {subgroup}",
                "",
                f"absent: no seed's split has a {subgroup} test condition (no value, not a zero).",
            ]
    return "\n".join(lines) + "\n"


def plot(metrics: pd.DataFrame, path, shown=DELTA_METRICS[:2]) -> None:
    """Fig. 3 layout: a row per dataset x metric, test subgroups across, a point per seed per method."""
    import seaborn as sns
    from matplotlib.figure import Figure

    from scfmbench.report.figures import NO_RESULTS, empty_figure, save_figure

    df = perturbation_frame(metrics)
    df = df[df["base"].isin(shown)]
    if df.empty:
        save_figure(empty_figure(NO_RESULTS), path)
        return
    panels = [(d, m) for d in sorted(df["dataset"].unique()) for m in shown if m in set(df["base"])]
    methods = sorted(df["method"].unique(), key=lambda m: (m not in CONTROLS, m))
    groups = [g for g in (ALL, *SUBGROUPS) if g in set(df["subgroup"])]
    fig = Figure(figsize=(max(6, 1.6 * len(groups) + 2.5), 3.2 * len(panels)))
    palette = dict(zip(methods, sns.color_palette("tab20", len(methods))))
    for i, (dataset, metric) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        sub = df[(df["dataset"] == dataset) & (df["base"] == metric)]
        width = 0.8 / max(len(methods), 1)
        for j, method in enumerate(methods):
            for k, group in enumerate(groups):
                vals = sub[(sub["method"] == method) & (sub["subgroup"] == group)]["value"].to_numpy()
                x = k - 0.4 + (j + 0.5) * width
                ax.scatter(np.full(len(vals), x), vals, s=12, color=palette[method], label=method if k == 0 else None)
                if len(vals):
                    ax.hlines(np.mean(vals), x - width / 2, x + width / 2, color=palette[method], linewidth=1.5)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel(metric)
        ax.set_title(dataset, fontsize=10)
        ax.axhline(0, color="0.8", linewidth=0.8, zorder=0)
    fig.axes[0].legend(
        fontsize=7, ncol=min(4, math.ceil(len(methods) / 2)), loc="lower left", bbox_to_anchor=(0, 1.12), frameon=False
    )
    fig.tight_layout()
    save_figure(fig, path)


def write_perturbation_report(metrics_paths, *, md, csv, html, png) -> None:
    from scfmbench.report.html import markdown_html

    metrics = read_metrics(list(metrics_paths))
    tidy = summary(metrics)
    text = to_markdown(tidy)
    write_text(text, md)
    write_csv(tidy, csv)
    write_text(markdown_html(text, title="perturbation summary table"), html)
    plot(metrics, png)


#: The perturbation task's control for the quality report: a model below ``train_mean`` on a delta
#: metric (by its mean over seeds, per dataset and subgroup) has learned nothing perturbation-specific.
QUALITY_CONTROL = "train_mean"


def below_train_mean(metrics: pd.DataFrame) -> list[dict]:
    """Quality rows (``scfmbench.report.quality.CHECK_COLUMNS``) for every perturbation method below
    ``train_mean`` on a delta metric; controls other than the model classes are not flagged."""
    df = perturbation_frame(metrics)
    df = df[df["base"].isin(DELTA_METRICS)]
    rows = []
    for (dataset, metric), g in df.groupby(["dataset", "metric"]):
        means = g.groupby("method")["value"].mean()
        if QUALITY_CONTROL not in means or pd.isna(means[QUALITY_CONTROL]):
            continue
        for method, value in means.items():
            if method in CONTROLS or pd.isna(value) or value >= means[QUALITY_CONTROL]:
                continue
            rows.append(
                dict(
                    check="below control",
                    task="perturbation",
                    dataset=dataset,
                    method=method,
                    seed=None,
                    metric=metric,
                    detail=f"{value:.4g} vs {QUALITY_CONTROL} {means[QUALITY_CONTROL]:.4g}",
                )
            )
    return rows
