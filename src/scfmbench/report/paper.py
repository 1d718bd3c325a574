"""GenoHoption Tables I and II layout: our numbers beside the reported ones.

Rows are methods in the paper's order (then any other configured method), columns
``dataset / metric`` in percent as ``mean ± std``; the best mean per column is **bold** and the
runner-up <u>underlined</u>, as in the paper. Where the paper reports the same method on the same
dataset, the reported value and our difference (ours - reported) follow in the next columns.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from scfmbench._io import markdown_cell
from scfmbench.report.tables import higher_is_better

#: Paper row label -> our method id (backbone-attention; ablations add a graph-variant suffix).
PAPER_METHODS: dict[str, str] = {
    "scBERT": "scbert-performer",
    "scGPT": "scgpt-full",
    "scGPT + Longformer": "scgpt-longformer",
    "scGPT + BigBird": "scgpt-bigbird",
    "scGPT + Diffuser": "scgpt-diffuser",
    "scGPT + GenoHoption-p": "scgpt-genohoption-p",
    "scGPT + GenoHoption-h": "scgpt-genohoption-h",
    "Geneformer": "geneformer-full",
    "Geneformer + Longformer": "geneformer-longformer",
    "Geneformer + BigBird": "geneformer-bigbird",
    "Geneformer + Diffuser": "geneformer-diffuser",
    "Geneformer + GenoHoption-p": "geneformer-genohoption-p",
    "Geneformer + GenoHoption-h": "geneformer-genohoption-h",
    "scGPT + GenoHoption-p w/o iter": "scgpt-onehop",
    "scGPT + GenoHoption-p w/o GRN": "scgpt-genohoption-p-nogrn",
    "scGPT + GenoHoption-p w/o Co": "scgpt-genohoption-p-nocoexpr",
}
TABLE_COLUMNS = [
    "table",
    "method",
    "paper_method",
    "dataset",
    "metric",
    "mean",
    "std",
    "n",
    "reported_mean",
    "reported_std",
    "difference",
    "rank",
]


def load_reported() -> pd.DataFrame:
    """The reported numbers shipped with the package, with our method ids in column ``method_id``."""
    with resources.files("scfmbench.reference").joinpath("genohoption_reported.csv").open() as fh:
        rep = pd.read_csv(fh)
    rep["method_id"] = rep["method"].map(PAPER_METHODS)
    return rep


def paper_table(
    metrics: pd.DataFrame, reported: pd.DataFrame, *, task: str = "annotation", metric_names=("accuracy", "macro_f1")
) -> pd.DataFrame:
    """Tidy paper table: one row per (method, dataset, metric), ours in percent beside the reported.

    ``rank`` is 1 for the best mean in its (dataset, metric) column, 2 for the runner-up.
    """
    ours = metrics[(metrics["task"] == task) & metrics["metric"].isin(metric_names)].copy()
    ours["value"] = ours["value"] * 100.0
    stats = ours.groupby(["method", "dataset", "metric"])["value"].agg(mean="mean", std="std", n="count").reset_index()
    rep = reported.dropna(subset=["method_id"]).rename(columns={"method_id": "_id"})
    rep = rep[["table", "_id", "method", "dataset", "metric", "mean_percent", "std_percent"]].rename(
        columns={
            "_id": "method",
            "method": "paper_method",
            "mean_percent": "reported_mean",
            "std_percent": "reported_std",
        }
    )
    out = stats.merge(rep, on=["method", "dataset", "metric"], how="left")
    out["difference"] = out["mean"] - out["reported_mean"]
    out["table"] = out["table"].fillna("")
    out["paper_method"] = (
        out["paper_method"].fillna(out["method"].map({v: k for k, v in PAPER_METHODS.items()})).fillna("")
    )
    out["rank"] = 0
    for (_, metric), idx in out.groupby(["dataset", "metric"]).groups.items():
        means = out.loc[idx, "mean"]
        order = means.rank(ascending=not higher_is_better(metric), method="min")
        out.loc[idx, "rank"] = order.where(order <= 2, 0).astype(int)
    order = {m: i for i, m in enumerate(PAPER_METHODS.values())}
    out["_order"] = out["method"].map(order).fillna(len(order))
    return (
        out.sort_values(["_order", "method", "dataset", "metric"])
        .drop(columns="_order")[TABLE_COLUMNS]
        .reset_index(drop=True)
    )


def _cell(mean, std, rank) -> str:
    if pd.isna(mean):
        return "–"
    text = f"{mean:.2f}" + (f" ± {std:.2f}" if pd.notna(std) else "")
    return f"**{text}**" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text


def paper_markdown(
    table: pd.DataFrame, *, markers: dict[tuple[str, str, str], str] | None = None, marker_note: str = ""
) -> str:
    """Markdown in the paper's layout (percent), reported numbers and differences beside ours.

    ``markers``: (dataset, method, metric) -> a symbol after our cell (the ↑ / ↓ of
    :func:`scfmbench.report.significance.cell_markers`); ``marker_note`` explains them in the legend.
    """
    if table.empty:
        return "_no annotation results configured_\n"
    cols = sorted({(d, m) for d, m in zip(table["dataset"], table["metric"])})
    has_rep = {
        c
        for c in cols
        if table.loc[(table["dataset"] == c[0]) & (table["metric"] == c[1]), "reported_mean"].notna().any()
    }
    header = ["method"]
    for d, m in cols:
        header += [f"{d} / {m} (ours)"] + ([f"{d} / {m} (reported)", "Δ"] if (d, m) in has_rep else [])
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * (len(header) - 1)]
    for method, rows in table.groupby("method", sort=False):
        label = rows["paper_method"].iloc[0] or method
        cells = [markdown_cell(f"{method} ({label})" if label != method else method)]
        for d, m in cols:
            r = rows[(rows["dataset"] == d) & (rows["metric"] == m)]
            if r.empty:
                cells += ["–"] + (["–", "–"] if (d, m) in has_rep else [])
                continue
            r = r.iloc[0]
            mark = (markers or {}).get((d, method, m))
            cells.append(_cell(r["mean"], r["std"], r["rank"]) + (f" {mark}" if mark else ""))
            if (d, m) in has_rep:
                cells += [
                    _cell(r["reported_mean"], r["reported_std"], 0),
                    "–" if pd.isna(r["difference"]) else f"{r['difference']:+.2f}",
                ]
        lines.append("| " + " | ".join(cells) + " |")
    legend = (
        (
            "\nPercent, mean ± std over seeds; best per column **bold**, runner-up <u>underlined</u>; reported: "
            "GenoHoption Tables I-II (5 seeds); Δ = ours - reported."
        )
        + (f" {marker_note}" if marker_note else "")
        + "\n"
    )
    return "\n".join(lines) + "\n" + legend


def reported_markdown(reported: pd.DataFrame) -> str:
    """The reported Tables I-II on their own (for runs whose datasets are not the paper's)."""
    rows = []
    for (table, method), g in reported.groupby(["table", "method"], sort=False):
        cells = {
            f"{d} / {m}": f"{mu:.2f} ± {sd:.2f}"
            for d, m, mu, sd in zip(g["dataset"], g["metric"], g["mean_percent"], g["std_percent"])
        }
        rows.append({"table": table, "method": method, **cells})
    df = pd.DataFrame(rows).fillna("–")
    header = list(df.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(str(v)) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


__all__ = ["PAPER_METHODS", "load_reported", "paper_table", "paper_markdown", "reported_markdown"]
