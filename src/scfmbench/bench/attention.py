"""Attention micro-benchmark: forward + backward time and peak memory per kernel and length.

    python -m scfmbench.bench.attention [--lengths 512 1024 ...] [--batch 8] [--heads 4] [--dim 32]
        [--degree 30] [--repeats 3] [--warmup 1] [--kernels ...] [--device cpu|cuda] [--csv PATH]

A command-line front end to :mod:`scfmbench.profile` (the workflow's profiling runs the same
code): every registered kernel runs beside the known implementations ``hf-longformer``,
``hf-bigbird`` and ``performer-pytorch`` (see :mod:`scfmbench.profile.mechanisms` for what each
one is, and ``gat``, ``schyena`` for the other mechanisms ``--kernels`` accepts). Each (kernel, L)
point runs in a fresh process; the protocol (warm-up, baseline, median time, peak memory over the
baseline, out of memory and time-outs as rows) is :mod:`scfmbench.profile.measure`'s. This table
keeps its short columns (``time_s`` = median time of forward + backward); ``--csv`` writes them.
"""

from __future__ import annotations

import argparse
import csv
import os

from scfmbench.profile.measure import PointSpec, sweep
from scfmbench.profile.measure import measure_point as _measure
from scfmbench.profile.mechanisms import KNOWN_IMPLEMENTATIONS as KNOWN
from scfmbench.profile.mechanisms import mechanism_names
from scfmbench.profile.mechanisms import random_cell_graphs as random_graph_pattern

COLUMNS = ("kernel", "L", "batch", "heads", "dim", "time_s", "peak_mem_mb", "status")
DEFAULT_LENGTHS = (512, 1024, 2048, 4096, 8192, 16384)

__all__ = [
    "COLUMNS",
    "KNOWN",
    "all_kernels",
    "format_table",
    "main",
    "measure_point",
    "random_graph_pattern",
    "run_sweep",
    "write_csv",
]


def all_kernels() -> list[str]:
    """Registered attention kernels plus the known implementations (the default ``--kernels``)."""
    from scfmbench.models.attention import KERNELS

    return list(KERNELS) + list(KNOWN)


def _short(row: dict) -> dict:
    """A profile row in this benchmark's columns (plus the message)."""
    return dict(
        kernel=row["mechanism"],
        L=row["L"],
        batch=row["batch"],
        heads=row["heads"],
        dim=row["dim"],
        time_s=row["time_median_s"],
        peak_mem_mb=row["peak_mem_mb"],
        status=row["status"],
        message=row["message"],
    )


def _spec(
    kernel: str,
    L: int,
    *,
    batch: int,
    heads: int,
    dim: int,
    degree: int,
    repeats: int,
    warmup: int,
    device: str,
    seed: int = 0,
    threads: int | None = None,
) -> PointSpec:
    return PointSpec(
        kernel,
        L,
        batch,
        "backward",
        heads=heads,
        dim=dim,
        degree=degree,
        repeats=repeats,
        warmup=warmup,
        device=device,
        seed=seed,
        threads=threads,
    )


def measure_point(kernel: str, L: int, **options) -> dict:
    """Median time and extra peak memory of one forward + backward, in this process."""
    return _short(_measure(_spec(kernel, L, **options)))


def run_sweep(
    *,
    kernels: list[str],
    lengths: list[int],
    timeout: float | None = None,
    max_mem_gb: float | None = None,
    verbose: bool = True,
    **options,
) -> list[dict]:
    """Every (kernel, L) point in its own process; one row each."""
    specs = [_spec(kernel, L, **options) for L in lengths for kernel in kernels]

    def show(row):
        if verbose:
            print(format_table([_short(row)]).splitlines()[1], flush=True)

    return [_short(r) for r in sweep(specs, timeout_s=timeout, max_mem_gb=max_mem_gb, on_row=show)]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'kernel':<18} {'L':>6} {'time_s':>10} {'peak_mem_mb':>12}  status"]
    for r in rows:
        t = "-" if r["time_s"] != r["time_s"] else f"{r['time_s']:.4f}"
        m = "-" if r["peak_mem_mb"] != r["peak_mem_mb"] else f"{r['peak_mem_mb']:.1f}"
        note = f"  ({r['message']})" if r.get("message") else ""
        lines.append(f"{r['kernel']:<18} {r['L']:>6} {t:>10} {m:>12}  {r['status']}{note}")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str) -> None:
    from scfmbench._io import atomic_path

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> list[dict]:
    import torch

    parser = argparse.ArgumentParser(prog="python -m scfmbench.bench.attention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--degree", type=int, default=30, help="mean in-degree of the graph kernels' cell graphs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--kernels", nargs="+", default=None, help=f"default: all registered kernels plus {', '.join(KNOWN)}"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per point (default: torch's choice)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per point (status timeout when exceeded)")
    parser.add_argument("--max-mem-gb", type=float, default=None, help="cap each point's memory (status oom past it)")
    parser.add_argument("--csv", default=None, help="write one row per (kernel, L) here")
    args = parser.parse_args(argv)
    kernels = args.kernels or all_kernels()
    unknown = sorted(set(kernels) - set(mechanism_names()))
    if unknown:
        parser.error(f"unknown kernels {unknown}; choose from {mechanism_names()}")
    print(
        f"device {args.device}, batch {args.batch}, heads {args.heads}, dim {args.dim}, degree {args.degree}, "
        f"repeats {args.repeats}, threads {args.threads or torch.get_num_threads()}",
        flush=True,
    )
    print(format_table([]), flush=True)
    rows = run_sweep(
        kernels=kernels,
        lengths=args.lengths,
        timeout=args.timeout,
        max_mem_gb=args.max_mem_gb,
        batch=args.batch,
        heads=args.heads,
        dim=args.dim,
        degree=args.degree,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        seed=args.seed,
        threads=args.threads,
    )
    if args.csv:
        write_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
