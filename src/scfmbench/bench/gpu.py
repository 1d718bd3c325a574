"""GPU check for a lent device: training-step times of the paper grid, a kernel sweep, and the
grid's estimated time from them.

    python -m scfmbench.bench.gpu [--config config/paper.yaml] [--steps 6] [--warmup 2]
        [--lengths 2048 8192 16384] [--precisions fp32 bf16] [--cells ms=13468 ...] [--csv DIR]

1. Training steps: every backbone x kernel of ``annotation.methods`` in the config, at the config's
   model sizes (``params.<backbone>``: width, depth, heads, ``max_len``, ``batch_size``), in fp32
   and bf16 autocast. Each point runs the project's own fine-tuning
   (:func:`scfmbench.annotation.transformer.annotate_transformer`, one epoch of ``warmup + steps``
   batches on simulated cells with a random gene graph of mean in-degree 30 for the graph kernels),
   once to warm up CUDA and once measured: seconds per optimizer step from the loop's own clock
   (:class:`scfmbench.train.History`), peak memory from ``torch.cuda.max_memory_allocated``.
2. Kernel sweep: forward + backward of every registered kernel up to L = 16,384
   (:mod:`scfmbench.bench.attention`, each point in its own process).
3. Estimate: for each annotation run of the grid (:func:`scfmbench.config.annotation_runs`: main
   grid, few-shot, sensitivity) ``seeds x epochs x ceil(training cells / batch)`` steps at the
   measured step time of its backbone x kernel and precision (:func:`estimate_grid`); early
   stopping only shortens this, so it is an upper bound of the fine-tuning time.

Sized for one H100 in under 10 minutes (the device tool's per-command limit). On a machine without
CUDA it refuses (:func:`require_cuda`); the kernel sweep on CPU is ``scfmbench.bench.attention``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pandas as pd

from scfmbench import InputError
from scfmbench.bench.steps import DEGREE, PRECISIONS, grid_points, measure_training

#: Reference and query cells of the scGPT annotation sets (Cui et al., Nat Methods 2024, Methods,
#: "Cell type annotation"): the training pool is the reference (split.valid_fraction of it held out).
#: Other datasets: read from results/data/<name>/prepared.h5ad when present, else --cells name=N.
REFERENCE_CELLS = {"ms": 7844, "myeloid": 9748, "pancreas": 10600}


class NoCuda(SystemExit):
    pass


def require_cuda(torch_module=None) -> None:
    """Refuse, with what to run instead, where no CUDA device is visible."""
    import torch

    torch = torch_module or torch
    if not torch.cuda.is_available():
        raise NoCuda(
            "scfmbench.bench.gpu measures the paper grid on a CUDA device, and torch sees none here "
            "(torch.cuda.is_available() is False). Run it on a GPU machine; on CPU, time the attention "
            "kernels with 'python -m scfmbench.bench.attention' and the default workflow with 'snakemake'."
        )


# ----------------------------------------------------------------------------- the estimate


def training_cells(dataset: str, config: dict, cells: dict[str, int]) -> int | None:
    """Training cells of an annotation dataset (few-shot names '{d}-fs{f}' scaled by f): the
    reference pool minus the validation hold-out. None where the size is unknown."""
    from scfmbench.config import parse_dataset

    base, fraction = parse_dataset(dataset)
    pool = cells.get(base)
    if pool is None:
        return None
    n = pool * (fraction or config.get("split", {}).get("train_fraction", 1.0) or 1.0)
    return int(round(n * (1.0 - config.get("split", {}).get("valid_fraction", 0.25))))


def estimate_grid(
    config: dict, step_seconds: dict[tuple[str, str, str], float], cells: dict[str, int], *, precision: str = "fp32"
) -> pd.DataFrame:
    """One row per annotation transformer run of ``config``: dataset, method, seeds, epochs, batch,
    training cells, steps (seeds x epochs x ceil(cells / batch)), seconds at the measured
    ``step_seconds[(backbone, kernel, precision)]``; NaN seconds where the size or the step time
    is unknown (the ``missing`` column says which)."""
    from scfmbench.config import annotation_runs, parse_transformer

    seeds = len(config["seeds"])
    rows = []
    for dataset, method in annotation_runs(config):
        parsed = parse_transformer(method)
        if parsed is None:
            continue
        p = {**(config.get("params", {}).get(parsed.backbone) or {})}
        epochs, batch = int(p.get("epochs") or 1), int(p.get("batch_size") or 1)
        n = training_cells(dataset, config, cells)
        t = step_seconds.get((parsed.backbone, parsed.attention, precision))
        steps = seeds * epochs * math.ceil(n / batch) if n is not None else None
        if p.get("max_steps") and steps is not None:
            steps = seeds * min(epochs * math.ceil(n / batch), int(p["max_steps"]))
        missing = "cells" if n is None else ("step time" if t is None else "")
        rows.append(
            dict(
                dataset=dataset,
                method=method,
                backbone=parsed.backbone,
                kernel=parsed.attention,
                seeds=seeds,
                epochs=epochs,
                batch=batch,
                train_cells=n,
                steps=steps,
                seconds=steps * t if steps is not None and t is not None else float("nan"),
                missing=missing,
            )
        )
    return pd.DataFrame(rows)


def local_cells(config: dict, root: str | Path = "results/data") -> dict[str, int]:
    """Reference-pool sizes of the config's datasets from prepared files of an earlier run."""
    import anndata as ad

    out = {}
    for name in config.get("datasets", {}):
        path = Path(root) / name / "prepared.h5ad"
        if path.exists():
            obs = ad.read_h5ad(path, backed="r").obs
            out[name] = int(obs["split"].astype(str).isin(["train", "valid"]).sum())
    return out


# ----------------------------------------------------------------------------- measurements


def _format(frame: pd.DataFrame, columns) -> str:
    return frame[[c for c in columns if c in frame]].to_string(index=False, float_format=lambda v: f"{v:.4g}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scfmbench.bench.gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--config", default="config/paper.yaml", help="the grid to measure and estimate (default: config/paper.yaml)"
    )
    ap.add_argument("--steps", type=int, default=6, help="measured optimizer steps per point (after --warmup)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    ap.add_argument(
        "--lengths", nargs="+", type=int, default=[2048, 8192, 16384], help="kernel sweep lengths (forward + backward)"
    )
    ap.add_argument(
        "--cells",
        nargs="*",
        default=[],
        metavar="NAME=N",
        help="reference cells of a dataset the estimate cannot size otherwise",
    )
    ap.add_argument("--out", default=None, help="folder for training.csv, kernels.csv, estimate.csv")
    args = ap.parse_args(argv)
    require_cuda()
    from scfmbench.bench.attention import all_kernels, run_sweep
    from scfmbench.config import load_config

    root = Path(__file__).resolve().parents[3]
    config = load_config(args.config, root / "workflow" / "schemas" / "config.schema.yaml")
    cells = {**REFERENCE_CELLS, **local_cells(config)}
    for item in args.cells:
        name, _, n = item.partition("=")
        if not n.isdigit():
            raise InputError(f"--cells {item!r}: expected NAME=N (reference cells of dataset NAME)")
        cells[name] = int(n)
    start = time.perf_counter()
    rows = []
    for backbone, kernel in grid_points(config):
        for precision in args.precisions:
            row = measure_training(
                backbone,
                kernel,
                config["params"].get(backbone) or {},
                precision=precision,
                steps=args.steps,
                warmup=args.warmup,
            )
            rows.append(row)
            print(
                f"{backbone}-{kernel} {precision}: {row.get('step_s', float('nan')):.4f} s/step, peak "
                f"{row.get('peak_mem_mb', float('nan')):.0f} MB {row['status']}",
                flush=True,
            )
    training = pd.DataFrame(rows)
    print(
        f"\n# Training steps at the config's sizes ({time.perf_counter() - start:.0f} s)\n"
        + _format(
            training,
            ["backbone", "kernel", "precision", "batch", "n_genes", "step_s", "steps_per_s", "peak_mem_mb", "status"],
        )
    )
    kernels = pd.DataFrame(
        run_sweep(
            kernels=all_kernels(),
            lengths=args.lengths,
            batch=1,
            heads=8,
            dim=64,
            degree=DEGREE,
            repeats=3,
            warmup=1,
            device="cuda",
            timeout=120,
            verbose=False,
        )
    )
    print(
        "\n# Kernels, forward + backward (batch 1, 8 heads x 64)\n"
        + _format(kernels, ["kernel", "L", "time_s", "peak_mem_mb", "status"])
    )
    times = {(r.backbone, r.kernel, r.precision): r.step_s for r in training.itertuples() if r.status == "ok"}
    lines = []
    for precision in args.precisions:
        est = estimate_grid(config, times, cells, precision=precision)
        known = est[est["missing"] == ""]
        lines.append(
            f"{precision}: {known['seconds'].sum() / 3600:.1f} GPU hours for {len(known)} of {len(est)} annotation "
            f"transformer runs ({int(known['steps'].sum())} steps, epochs at their cap: an upper bound)"
        )
        if (est["missing"] != "").any():
            lines.append(
                f"  not sized: {sorted(set(est.loc[est['missing'] == 'cells', 'dataset']))} (pass --cells NAME=N)"
            )
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            est.to_csv(Path(args.out) / f"estimate_{precision}.csv", index=False)
    print("\n# Estimated fine-tuning time of the grid\n" + "\n".join(lines))
    if args.out:
        training.to_csv(Path(args.out) / "training.csv", index=False)
        kernels.to_csv(Path(args.out) / "kernels.csv", index=False)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
