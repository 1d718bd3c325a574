"""Optimizer steps per second of every backbone x kernel, through the project's own fine-tuning.

    python -m scfmbench.bench.steps [--config config/config.yaml] [--dataset synthetic] [--steps 20]
        [--warmup 3] [--device cpu] [--csv PATH]

Each point runs :func:`scfmbench.annotation.transformer.annotate_transformer` (tokenizing,
:func:`scfmbench.train.fit`, validation) on simulated cells of the size of a configured dataset
(its genes; the graph kernels on a random gene graph of mean in-degree 30), once to warm up and
once measured, with the config's ``params.<backbone>`` (width, depth, heads, ``max_len``, batch).
Steps per second come from the loop's own clock (:class:`scfmbench.train.History`: training and
the per-epoch validation, not tokenizing or process start-up). On CPU this is the default's
training speed; :mod:`scfmbench.bench.gpu` runs the same measurement at the paper grid's sizes on
a GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PRECISIONS = {"fp32": None, "bf16": "bf16"}
DEGREE = 30


def simulated_cells(n_cells: int, n_genes: int, *, n_types: int = 4, seed: int = 0):
    """Prepared-layout cells for a timing run: counts (``layers['counts']``), log1p(CP10k) ``X``,
    ``obs['cell_type']`` and ``obs['split']`` (all train but one batch of valid)."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n_cells)
    rate = rng.gamma(0.3, 2.0, size=(n_types, n_genes))[types]
    counts = sp.csr_matrix(rng.poisson(rate).astype(np.float32))
    lib = np.asarray(counts.sum(1)).ravel().clip(1)
    X = sp.csr_matrix(counts.multiply(1e4 / lib[:, None]).log1p(), dtype=np.float32)
    a = ad.AnnData(X=X, layers={"counts": counts})
    a.var_names = [f"g{i}" for i in range(n_genes)]
    a.obs_names = [f"c{i}" for i in range(n_cells)]
    a.obs["cell_type"] = [f"t{t}" for t in types]
    return a


def random_gene_graph(n_genes: int, degree: int = DEGREE, seed: int = 0):
    """A random gene graph (CLS node 0 joined to every gene, self-loops) of mean in-degree ~degree."""
    import scipy.sparse as sp

    from scfmbench.graphs.build import GeneGraph

    rng = np.random.default_rng(seed)
    n = n_genes + 1
    src, dst = rng.integers(1, n, n_genes * degree), rng.integers(1, n, n_genes * degree)
    src = np.concatenate([src, np.zeros(n_genes, int), np.arange(1, n), np.arange(n)])
    dst = np.concatenate([dst, np.arange(1, n), np.zeros(n_genes, int), np.arange(n)])
    adj = sp.csr_matrix((np.ones(len(src), dtype=np.int8), (dst, src)), shape=(n, n))
    adj.data[:] = 1
    return GeneGraph(adjacency=adj, gene_names=np.array([f"g{i}" for i in range(n_genes)]), has_cls=True)


def measure_training(
    backbone: str,
    kernel: str,
    params: dict,
    *,
    precision: str = "fp32",
    steps: int = 6,
    warmup: int = 2,
    n_genes: int | None = None,
    device=None,
    seed: int = 0,
) -> dict:
    """Seconds per optimizer step and peak memory of ``backbone`` x ``kernel`` at ``params``' size."""
    import torch

    from scfmbench.annotation.transformer import annotate_transformer, reads_graph

    p = {
        k: v
        for k, v in params.items()
        if k
        not in (
            "epochs",
            "max_steps",
            "patience",
            "checkpoint",
            "token_dictionary",
            "valid_cells",
            "predict_cells",
            "predict_batch_size",
        )
    }
    batch = int(p.get("batch_size", 16))
    n_genes = n_genes or max(int(p.get("max_len") or 0) + 1, 2048)
    adata = simulated_cells(batch * (steps + 1) + batch, n_genes, seed=seed)
    split = np.array(["train"] * (batch * (steps + 1)) + ["valid"] * (batch // 2) + ["test"] * (batch - batch // 2))
    adata.obs["split"] = split
    graph = random_gene_graph(n_genes, seed=seed) if reads_graph(p, kernel) else None
    device = torch.device(device) if device is not None else torch.device("cuda")
    row = dict(
        backbone=backbone, kernel=kernel, precision=precision, batch=batch, n_genes=n_genes, status="ok", message=""
    )
    try:
        for run in ("warmup", "measured"):
            n_train = batch * (warmup if run == "warmup" else steps)
            sub = adata[np.r_[np.arange(n_train), np.flatnonzero(split != "train")]].copy()
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
            _, record = annotate_transformer(
                sub,
                backbone=backbone,
                attention=kernel,
                seed=seed,
                graph=graph,
                device=device,
                **{**p, "epochs": 1, "max_steps": None, "patience": 1, "amp": PRECISIONS[precision]},
            )
        hist = record["history"]
        n_steps = hist["curve"]["step"][-1]
        row.update(
            steps=n_steps,
            step_s=hist["seconds"] / n_steps,
            steps_per_s=n_steps / hist["seconds"],
            peak_mem_mb=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan"),
        )
    except torch.cuda.OutOfMemoryError as exc:  # a row, not a crash: the grid's other points still run
        row.update(
            status="oom",
            message=str(exc).splitlines()[0],
            step_s=float("nan"),
            steps_per_s=float("nan"),
            peak_mem_mb=float("nan"),
        )
        torch.cuda.empty_cache()
    return row


def grid_points(config: dict) -> list[tuple[str, str]]:
    """(backbone, kernel) of every annotation transformer in ``config`` (main grid, once each)."""
    from scfmbench.config import parse_transformer

    seen = []
    for method in config["annotation"]["methods"]:
        parsed = parse_transformer(method)
        if parsed is not None and (parsed.backbone, parsed.attention) not in seen:
            seen.append((parsed.backbone, parsed.attention))
    return seen


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(prog="python -m scfmbench.bench.steps", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument(
        "--dataset",
        default="synthetic",
        help="a configured dataset whose gene count sizes the cells (synthetic: its n_genes)",
    )
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the workflow's training jobs run on 1)")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    import torch

    from scfmbench.config import load_config

    torch.set_num_threads(args.threads)
    root = Path(__file__).resolve().parents[3]
    config = load_config(args.config, root / "workflow" / "schemas" / "config.schema.yaml")
    ds = config["datasets"][args.dataset]
    n_genes = (ds.get("synthetic") or {}).get("n_genes") or {"pbmc68k": 765}.get(ds["source"])
    if n_genes is None:
        raise SystemExit(
            f"--dataset {args.dataset}: its gene count is known only for the embedded datasets (synthetic, pbmc68k)"
        )
    rows = []
    for backbone, kernel in grid_points(config):
        row = measure_training(
            backbone,
            kernel,
            config["params"].get(backbone) or {},
            steps=args.steps,
            warmup=args.warmup,
            n_genes=n_genes,
            device=args.device,
        )
        rows.append(row)
        print(f"{backbone}-{kernel}: {row['steps_per_s']:.1f} steps/s ({row['step_s'] * 1e3:.1f} ms/step)", flush=True)
    frame = pd.DataFrame(rows)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    return frame


if __name__ == "__main__":
    main()
    sys.exit(0)
