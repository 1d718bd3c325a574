"""Paired significance across seeds for every table of the report (rule ``report_significance``).

Same seed = same split, so every comparison is paired by seed (:mod:`scfmbench.stats`). The config
block ``significance`` (schema: ``workflow/schemas/config.schema.yaml``) says what is compared with
what:

- kind ``control``: every method of a task against the task's control (``significance.controls``:
  annotation ``logreg``, imputation and denoising ``none``, doublets ``all_doublet``, perturbation
  ``train_mean``, embedding ``pca``);
- the kinds of ``significance.comparisons``: by default ``backbone`` (each ``{backbone}-{attention}``
  against ``{backbone}-full``), ``paper`` (GenoHoption against the rows Table I compares it with:
  Longformer, BigBird and Diffuser on the same backbone and scBERT, the Performer proxy) and
  ``ablation`` (Table II: w/o GRN, w/o Co and w/o iter against GenoHoption-p).

A comparison exists where both methods ran on the task and dataset. Holm's adjustment runs within
one (task, dataset, metric, kind) family: the methods of one table against one kind of reference.

Outputs of :func:`write_significance` (atomically)::

    significance.csv / .md / .html      # every comparison (SIG_COLUMNS); the Markdown: shown metrics
    ranks.csv / .md                     # average rank per (task, metric, method), Friedman p, CD
    figures/critical_difference.png     # a CD diagram per task (main metric)

Only the main grid is compared (:func:`scfmbench.report.studies.main_grid`: no few-shot datasets
or sensitivity methods), as in the summary tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import pandas as pd

from scfmbench import InputError
from scfmbench._io import markdown_cell, write_csv, write_text
from scfmbench.report.html import markdown_html
from scfmbench.report.studies import main_grid
from scfmbench.report.tables import METRIC_DIRECTION, higher_is_better
from scfmbench.stats import critical_difference, friedman, holm, mean_ranks, pair_by_seed, paired_test

CONTROL = "control"
SIG_COLUMNS = [
    "task",
    "dataset",
    "metric",
    "kind",
    "method",
    "reference",
    "n_pairs",
    "method_mean",
    "reference_mean",
    "mean_diff",
    "ci_low",
    "ci_high",
    "t_p",
    "wilcoxon_p",
    "holm_t_p",
    "holm_wilcoxon_p",
    "test",
    "significant",
    "direction",
    "marker",
    "note",
]
RANK_COLUMNS = [
    "task",
    "metric",
    "method",
    "mean_rank",
    "n_datasets",
    "n_methods",
    "friedman_chi2",
    "friedman_p",
    "critical_difference",
    "alpha",
    "main",
    "note",
]
UP, DOWN = "↑", "↓"
NO_RESULTS = "no results configured"


def significance_paths(outdir: str | Path) -> dict[str, Path]:
    """Every file :func:`write_significance` writes, by name."""
    outdir = Path(outdir)
    names = {
        "csv": "significance.csv",
        "md": "significance.md",
        "html": "significance.html",
        "ranks_csv": "ranks.csv",
        "ranks_md": "ranks.md",
        "cd_png": "figures/critical_difference.png",
    }
    return {k: outdir / v for k, v in names.items()}


def metric_higher_is_better(metric: str) -> bool:
    """Direction of a metric; a perturbation metric ``<metric>:<subgroup>`` takes its base's
    (GEARS: ``mse*`` lower, ``pearson*`` higher is better)."""
    if metric in METRIC_DIRECTION:
        return METRIC_DIRECTION[metric]
    base = metric.partition(":")[0]
    if base in METRIC_DIRECTION:
        return METRIC_DIRECTION[base]
    from scfmbench.perturbation.metrics import METRICS as PERTURBATION_METRICS

    if base in PERTURBATION_METRICS:
        return not base.startswith("mse")
    return higher_is_better(metric)  # warns: unregistered


def check_config(cfg: Mapping) -> None:
    """Cross-key checks the schema cannot express."""
    kinds = {c["kind"] for c in cfg["comparisons"]}
    if len(kinds) != len(cfg["comparisons"]):
        raise InputError(
            "config key 'significance.comparisons': each kind appears once (got "
            f"{[c['kind'] for c in cfg['comparisons']]}); list more methods or references in one entry instead."
        )
    unknown = [k for k in cfg["markers"] if k != CONTROL and k not in kinds]
    if unknown:
        raise InputError(
            f"config key 'significance.markers': {unknown} name no kind of reference; kinds are "
            f"{[CONTROL, *sorted(kinds)]}."
        )


def backbone_of(method: str) -> str:
    """The backbone of ``{backbone}-{attention}[...]``: the id up to the first '-'."""
    return method.split("-", 1)[0]


def references(methods: Iterable[str], task: str, cfg: Mapping) -> list[tuple[str, str, str]]:
    """(kind, method, reference) of every comparison among ``methods`` (those that ran on one task
    and dataset), in config order: the comparison rules, then the task's control."""
    present = sorted(set(methods))
    out = []
    for rule in cfg["comparisons"]:
        for method in present:
            if not any(fnmatchcase(method, pattern) for pattern in rule["methods"]):
                continue
            for template in rule["references"]:
                ref = template.replace("{backbone}", backbone_of(method))
                if ref != method and ref in present:
                    out.append((rule["kind"], method, ref))
    control = cfg["controls"].get(task)
    if control in present:
        out += [(CONTROL, m, control) for m in present if m != control]
    return list(dict.fromkeys(out))


def _values(metrics: pd.DataFrame) -> pd.DataFrame:
    df = metrics[["task", "dataset", "method", "seed", "metric", "value"]].copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    dup = df.duplicated(["task", "dataset", "method", "seed", "metric"], keep=False)
    if dup.any():
        raise InputError(
            "duplicate metrics records (one run listed twice):\n"
            f"{df.loc[dup, ['task', 'dataset', 'method', 'seed', 'metric']].drop_duplicates().to_string(index=False)}"
        )
    return df


def compare(metrics: pd.DataFrame, cfg: Mapping, *, tasks: Iterable[str] | None = None) -> pd.DataFrame:
    """Every configured comparison of ``metrics`` (records, :data:`scfmbench.results.METRIC_COLUMNS`)
    as rows of :data:`SIG_COLUMNS`, Holm-adjusted per (task, dataset, metric, kind).

    ``mean_diff`` is method - reference over the paired seeds (the metric's own scale);
    ``direction`` says whether that is ``better``, ``worse`` or ``equal`` for the metric;
    ``significant`` is the Holm-adjusted p of ``cfg['test']`` below ``cfg['alpha']``; ``marker`` is
    ↑ / ↓ for a significant better / worse; ``note`` why a p-value is missing or degenerate.
    """
    check_config(cfg)
    df = _values(metrics)
    if tasks is not None:
        df = df[df["task"].isin(list(tasks))]
    rows = []
    for (task, dataset), block in df.groupby(["task", "dataset"], sort=True):
        pairs = references(block["method"].unique(), task, cfg)
        if not pairs:
            continue
        # method -> metric -> values by seed
        series = {key: g.set_index("seed")["value"] for key, g in block.groupby(["method", "metric"])}
        for metric in sorted(block["metric"].unique()):
            higher = metric_higher_is_better(metric)
            for kind, method, ref in pairs:
                a, b = series.get((method, metric)), series.get((ref, metric))
                if a is None or b is None:
                    continue
                x, y, _ = pair_by_seed(a, b)
                r = paired_test(x, y)
                rows.append(
                    dict(
                        task=task,
                        dataset=dataset,
                        metric=metric,
                        kind=kind,
                        method=method,
                        reference=ref,
                        n_pairs=r.n,
                        method_mean=float(np.nanmean(a)) if a.notna().any() else math.nan,
                        reference_mean=float(np.nanmean(b)) if b.notna().any() else math.nan,
                        mean_diff=r.mean_diff,
                        ci_low=r.ci_low,
                        ci_high=r.ci_high,
                        t_p=r.t_p,
                        wilcoxon_p=r.wilcoxon_p,
                        note=r.note,
                        _higher=higher,
                    )
                )
    if not rows:
        return pd.DataFrame(columns=SIG_COLUMNS)
    out = pd.DataFrame(rows)
    out["holm_t_p"] = math.nan
    out["holm_wilcoxon_p"] = math.nan
    for _, idx in out.groupby(["task", "dataset", "metric", "kind"]).groups.items():
        out.loc[idx, "holm_t_p"] = holm(out.loc[idx, "t_p"])
        out.loc[idx, "holm_wilcoxon_p"] = holm(out.loc[idx, "wilcoxon_p"])
    test = cfg["test"]
    out["test"] = test
    adjusted = out["holm_t_p" if test == "ttest" else "holm_wilcoxon_p"]
    out["significant"] = adjusted.lt(cfg["alpha"]).fillna(False).astype(bool)
    signed = out["mean_diff"] * np.where(out["_higher"], 1.0, -1.0)
    out["direction"] = np.select([signed > 0, signed < 0, signed == 0], ["better", "worse", "equal"], default="")
    out["marker"] = np.where(
        out["significant"] & (out["direction"] == "better"),
        UP,
        np.where(out["significant"] & (out["direction"] == "worse"), DOWN, ""),
    )
    return out[SIG_COLUMNS].reset_index(drop=True)


def cell_markers(sig: pd.DataFrame, cfg: Mapping, task: str) -> dict[tuple[str, str, str], str]:
    """(dataset, method, metric) -> ↑ / ↓ of ``task``, against the first kind in ``cfg['markers']``
    that compares the method there (no entry when not significant or not compared)."""
    out: dict[tuple[str, str, str], str] = {}
    sig = sig[sig["task"] == task]
    for kind in cfg["markers"]:
        for r in sig[sig["kind"] == kind].itertuples(index=False):
            key = (r.dataset, r.method, r.metric)
            if key not in out:
                out[key] = r.marker
    return {k: v for k, v in out.items() if v}


def marker_legend(cfg: Mapping) -> str:
    """One sentence for a table legend: what the markers mean."""
    test = "paired t-test" if cfg["test"] == "ttest" else "exact Wilcoxon signed-rank test"
    kinds = ", else ".join(
        f"its reference of kind `{k}`" if k != CONTROL else "the task's control" for k in cfg["markers"]
    )
    return (
        f"{UP} / {DOWN}: significantly better / worse than the row's reference ({kinds}; {test} over the "
        f"paired seeds, Holm-adjusted across the table's methods, alpha {cfg['alpha']:g}; "
        "every number in `significance.csv`)."
    )


# ---------------------------------------------------------------------------------------------
# ranks across datasets


def complete_block(scores: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The largest complete datasets x methods block, found greedily: drop the row or column with
    the largest share of missing values (a dataset first on ties) until none is missing.

    The Friedman test needs every method on every dataset; a method run on a few datasets only
    (``annotation.method_datasets``) or a dataset with only the controls would otherwise leave
    nothing. Returns (block, dropped datasets, dropped methods).
    """
    block = scores.copy()
    dropped_d, dropped_m = [], []
    while block.size and block.isna().to_numpy().any():
        row = block.isna().mean(axis=1)
        col = block.isna().mean(axis=0)
        if row.max() >= col.max():
            d = row.idxmax()
            dropped_d.append(d)
            block = block.drop(index=d)
        else:
            m = col.idxmax()
            dropped_m.append(m)
            block = block.drop(columns=m)
    return block, dropped_d, dropped_m


def rank_table(metrics: pd.DataFrame, cfg: Mapping) -> pd.DataFrame:
    """Average rank of every method per (task, metric) over the task's datasets (rows of
    :data:`RANK_COLUMNS`), rank 1 the best mean over seeds, with the Friedman test and the Nemenyi
    critical difference of that (task, metric); ``main`` marks the task's main metric."""
    df = _values(metrics)
    rows = []
    for (task, metric), block in df.groupby(["task", "metric"], sort=True):
        scores = block.groupby(["dataset", "method"])["value"].mean().unstack("method")
        full, drop_d, drop_m = complete_block(scores)
        notes = []
        if drop_d:
            notes.append(f"datasets left out (missing methods): {', '.join(map(str, drop_d))}")
        if drop_m:
            notes.append(f"methods left out (missing datasets or undefined): {', '.join(map(str, drop_m))}")
        main = cfg["main_metric"].get(task)
        is_main = main is None or main == metric
        if full.empty:
            continue
        ranks = mean_ranks(full, higher_is_better=metric_higher_is_better(metric)).mean(axis=0)
        n, k = full.shape
        chi2, p, why = friedman(full)
        if why:
            notes.append(why)
        cd = critical_difference(k, n, cfg["alpha"])
        for method, r in ranks.sort_values(kind="stable").items():
            rows.append(
                dict(
                    task=task,
                    metric=metric,
                    method=method,
                    mean_rank=float(r),
                    n_datasets=n,
                    n_methods=k,
                    friedman_chi2=chi2,
                    friedman_p=p,
                    critical_difference=cd,
                    alpha=cfg["alpha"],
                    main=is_main,
                    note="; ".join(notes),
                )
            )
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Markdown


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _num(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:+.4g}"


def significance_markdown(sig: pd.DataFrame, cfg: Mapping) -> str:
    """Per task, one table of the shown metrics' comparisons (``cfg['shown_metrics']``)."""
    test = "paired t-test" if cfg["test"] == "ttest" else "exact Wilcoxon signed-rank test"
    head = (
        "Each method against its references over the seeds both ran (same seed = same split): Δ = method - "
        "reference, mean over paired seeds with a 95% t interval; p from the paired t-test and the exact "
        "Wilcoxon signed-rank test, and Holm-adjusted (in brackets) across the methods compared with one kind "
        f"of reference on one dataset and metric. {UP} / {DOWN}: better / worse with the Holm-adjusted {test} "
        f"p below {cfg['alpha']:g}. `significance.csv` has every metric.\n"
    )
    if sig.empty:
        return head + "\n_" + NO_RESULTS + "_\n"
    parts = [head]
    for task, t in sig.groupby("task", sort=True):
        shown = cfg["shown_metrics"].get(task)
        if shown is not None:
            t = t[t["metric"].isin(shown)]
        parts.append(f"## {task}\n")
        if t.empty:
            parts.append(f"_none of the shown metrics ({', '.join(shown)}) was recorded_\n")
            continue
        lines = [
            "| dataset | metric | kind | method | reference | n | Δ | 95% CI | t p (Holm) | "
            "Wilcoxon p (Holm) | | note |",
            "|:---|:---|:---|:---|:---|---:|---:|---:|---:|---:|:---|:---|",
        ]
        for r in t.itertuples(index=False):
            ci = "–" if not np.isfinite(r.ci_low) else f"[{r.ci_low:+.3g}, {r.ci_high:+.3g}]"
            lines.append(
                f"| {markdown_cell(r.dataset)} | {markdown_cell(r.metric)} | {r.kind} | "
                f"{markdown_cell(r.method)} | {markdown_cell(r.reference)} | {r.n_pairs} | {_num(r.mean_diff)} | "
                f"{ci} | {_p(r.t_p)} ({_p(r.holm_t_p)}) | {_p(r.wilcoxon_p)} ({_p(r.holm_wilcoxon_p)}) | "
                f"{r.marker} | {markdown_cell(r.note)} |"
            )
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def ranks_markdown(ranks: pd.DataFrame) -> str:
    """Per task, the average ranks of the main metric(s), the Friedman p and the critical difference."""
    head = (
        "Average rank over datasets (rank 1 = best mean over seeds on a dataset; ties share their average rank; "
        "Demšar 2006). Friedman: do the methods' ranks differ at all? CD: the Nemenyi critical difference, two "
        "methods whose average ranks differ by less are not significantly different. With few datasets both are "
        "weak; `ranks.csv` has every metric.\n"
    )
    main = ranks[ranks["main"]] if not ranks.empty else ranks
    if main.empty:
        return head + "\n_" + NO_RESULTS + "_\n"
    parts = [head]
    for (task, metric), g in main.groupby(["task", "metric"], sort=True):
        r0 = g.iloc[0]
        parts.append(f"## {task}: {markdown_cell(metric)}\n")
        stat = "–" if not np.isfinite(r0.friedman_chi2) else f"{r0.friedman_chi2:.3g}"
        cd = "–" if not np.isfinite(r0.critical_difference) else f"{r0.critical_difference:.3g}"
        parts.append(
            f"{int(r0.n_methods)} methods on {int(r0.n_datasets)} dataset(s): Friedman chi-square {stat}, "
            f"p {_p(r0.friedman_p)}; CD (alpha {r0.alpha:g}) {cd}."
            + (f" {markdown_cell(r0.note)}." if r0.note else "")
            + "\n"
        )
        lines = ["| rank | method | average rank |", "|---:|:---|---:|"]
        lines += [
            f"| {i} | {markdown_cell(r.method)} | {r.mean_rank:.2f} |"
            for i, r in enumerate(g.itertuples(index=False), 1)
        ]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# critical-difference diagram


def cliques(avg: pd.Series, cd: float) -> list[tuple[int, int]]:
    """Maximal runs (first, last position in rank order) of methods whose average ranks differ by
    less than ``cd``: the groups a CD diagram joins with a bar (singletons left out)."""
    r = avg.sort_values(kind="stable").to_numpy()
    groups = []
    for i in range(len(r)):
        j = i
        while j + 1 < len(r) and r[j + 1] - r[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in groups):
            groups.append((i, j))
    return groups


def _cd_panel(ax, g: pd.DataFrame, title: str) -> None:
    avg = g.set_index("method")["mean_rank"].sort_values(kind="stable")
    k, cd = len(avg), float(g["critical_difference"].iloc[0])
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    if k < 2:
        ax.text(0.5, 0.5, "fewer than 2 methods ranked", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = 1, k
    ax.set_xlim(lo - 0.5, hi + 0.5)
    n_left = math.ceil(k / 2)
    groups = cliques(avg, cd) if np.isfinite(cd) else []
    drop = 0.25 * len(groups)  # room for the clique bars between the axis and the first label
    ax.set_ylim(-(max(n_left, k - n_left) + drop + 0.8), 1.6)
    ax.hlines(0, lo, hi, color="black", linewidth=1)
    for t in range(lo, hi + 1):
        ax.vlines(t, 0, 0.15, color="black", linewidth=1)
        ax.text(t, 0.25, str(t), ha="center", va="bottom", fontsize=8)
    # Method labels: best half to the left margin, the rest to the right, joined by elbows.
    for i, (method, r) in enumerate(avg.items()):
        left = i < n_left
        y = (-(i + 1) if left else -(k - i)) - drop
        x_end = lo - 0.45 if left else hi + 0.45
        ax.plot([r, r, x_end], [0, y, y], color="0.25", linewidth=0.8)
        ax.text(
            x_end,
            y,
            f"{method} ({r:.2f})" if left else f"({r:.2f}) {method}",
            ha="right" if left else "left",
            va="center",
            fontsize=8,
            clip_on=False,
        )
    if np.isfinite(cd):
        ax.plot([lo, lo + cd], [1.1, 1.1], color="tab:red", linewidth=2)
        ax.text(lo + cd / 2, 1.2, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8, color="tab:red")
        for j, (a, b) in enumerate(groups):
            y = -0.35 - 0.25 * j
            ax.plot(
                [avg.iloc[a] - 0.05, avg.iloc[b] + 0.05], [y, y], color="black", linewidth=3, solid_capstyle="round"
            )


def plot_critical_difference(ranks: pd.DataFrame, path: str | Path) -> None:
    """A CD diagram (Demšar 2006, Fig. 1) per (task, main metric): methods on the average-rank axis,
    rank 1 (best) left; thick bars join methods not significantly different (Nemenyi, CD in red)."""
    from matplotlib.figure import Figure

    from scfmbench.report.figures import empty_figure, save_figure

    main = ranks[ranks["main"]] if not ranks.empty else ranks
    panels = list(main.groupby(["task", "metric"], sort=True))
    if not panels:
        save_figure(empty_figure(NO_RESULTS), path)
        return
    heights = [0.32 * (math.ceil(len(g) / 2) + 4) + 0.6 for _, g in panels]
    width = max(8.0, 0.5 * max(len(g) for _, g in panels) + 6.0)
    fig = Figure(figsize=(width, sum(heights) + 0.4), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, ((task, metric), g) in zip(axes, panels):
        r0 = g.iloc[0]
        p = "n/a" if not np.isfinite(r0.friedman_p) else f"{r0.friedman_p:.3g}"
        _cd_panel(
            ax, g, f"{task}: {metric} — {int(r0.n_methods)} methods, {int(r0.n_datasets)} dataset(s), Friedman p = {p}"
        )
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------


def write_significance(metrics_path: str | Path | pd.DataFrame, out: Mapping | object, *, config: Mapping) -> None:
    """Write significance.{csv,md,html}, ranks.{csv,md} and the CD figure (:func:`significance_paths`
    names, as keys of a mapping or attributes, e.g. ``snakemake.output``) for ``config``, the
    validated ``significance`` block."""
    metrics = metrics_path if isinstance(metrics_path, pd.DataFrame) else pd.read_csv(metrics_path)
    get = (lambda k: out[k]) if isinstance(out, Mapping) else (lambda k: getattr(out, k))
    grid = main_grid(metrics)
    sig = compare(grid, config)
    write_csv(sig, get("csv"))
    md = "# Paired significance across seeds\n\n" + significance_markdown(sig, config)
    write_text(md, get("md"))
    write_text(markdown_html(md, title="Paired significance across seeds"), get("html"))
    ranks = rank_table(grid, config)
    write_csv(ranks, get("ranks_csv"))
    write_text("# Average ranks across datasets\n\n" + ranks_markdown(ranks), get("ranks_md"))
    plot_critical_difference(ranks, get("cd_png"))


__all__ = [
    "CONTROL",
    "RANK_COLUMNS",
    "SIG_COLUMNS",
    "cell_markers",
    "check_config",
    "cliques",
    "compare",
    "complete_block",
    "marker_legend",
    "metric_higher_is_better",
    "plot_critical_difference",
    "rank_table",
    "ranks_markdown",
    "references",
    "significance_markdown",
    "significance_paths",
    "write_significance",
]
