"""Training time and peak memory of DCA (:mod:`scfmbench.impute.dca`) on simulated counts.

Usage::

    python -m scfmbench.bench.dca [--n-cells 10000] [--n-genes 2000] [--epochs 300] [--threads N] [--json out.json]

    # The port against the dca package on the same masked folds (docs/reproducibility.md, "DCA: the port and the
    # package"):
    python -m scfmbench.bench.dca --masked results/imputation/pbmc68k/seed0/masked.h5ad \
        --heldout results/imputation/pbmc68k/seed0/heldout.npz \
        --package-predictions results/imputation/pbmc68k/dca_original/seed0/predictions.npz \
        [--port-predictions results/imputation/pbmc68k/dca/seed0/predictions.npz] [--seed 0] [--threads 1]

In the second form the port's predictions are computed on the masked file (with ``--seed``,
``--threads`` torch threads, DCA's defaults) unless ``--port-predictions`` gives them, and both
files are scored the protocol's way (MSE and Pearson over the masked entries, against the truth too
when the dataset has one), printed side by side with the agreement of the two predictions.

A warm-up fit (one epoch on 256 cells) runs first; then one timed fit with DCA's defaults (early
stopping included). Memory on CPU is the process's peak resident set size during the fit: the
high-water mark is reset just before it (Linux ``/proc/self/clear_refs``; where that is not possible
``ru_maxrss`` is the peak since the process started) and reported with its increase over the RSS
before the fit; on CUDA, ``torch.cuda.max_memory_allocated`` after a reset. Out-of-memory is
reported as a result, not a crash.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np
import psutil
import torch

from scfmbench._rss import peak_rss_mb, reset_peak_rss
from scfmbench.impute.dca import DCAConfig, fit_dca


def simulate_counts(
    n_cells: int,
    n_genes: int,
    *,
    rank: int = 8,
    depth: float = 2000.0,
    theta: float = 5.0,
    dropout: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank NB counts with extra zeros, and their true means.

    Expression profiles ``W @ H`` (gamma factors, ``rank`` programs) scaled to library sizes drawn
    log-normally around ``depth``; counts ~ NB(mean, ``theta``); then each entry is zeroed with
    probability ``dropout``.

    Returns
    -------
    counts : np.ndarray
        (n_cells, n_genes) float32 counts.
    mean : np.ndarray
        (n_cells, n_genes) float32 true NB means (before dropout).
    """
    rng = np.random.default_rng(seed)
    w = rng.gamma(1.0, 1.0, size=(n_cells, rank))
    h = rng.gamma(0.3, 1.0, size=(rank, n_genes))
    profile = w @ h
    profile /= profile.sum(axis=1, keepdims=True)
    library = depth * rng.lognormal(0.0, 0.3, size=(n_cells, 1))
    mean = profile * library
    counts = rng.negative_binomial(theta, theta / (theta + mean)).astype(np.float32)
    counts[rng.random(counts.shape) < dropout] = 0
    return counts, mean.astype(np.float32)


def run_benchmark(n_cells: int, n_genes: int, *, epochs: int = 300, seed: int = 0, device: str | None = None) -> dict:
    """Fit DCA once (after a warm-up) and return one result record (a flat dict)."""
    counts, _ = simulate_counts(n_cells, n_genes, seed=seed)
    config = DCAConfig(epochs=epochs)
    fit_dca(
        counts[: min(256, n_cells)], config=dataclasses.replace(config, epochs=1), seed=seed, device=device
    )  # warm-up
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    record = {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "max_epochs": epochs,
        "seed": seed,
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min_before": os.getloadavg()[0],
    }
    rss_before = psutil.Process().memory_info().rss
    record["peak_rss_since"] = "fit start" if reset_peak_rss() else "process start"
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    try:
        result = fit_dca(counts, config=config, seed=seed, device=dev)
    except torch.cuda.OutOfMemoryError:
        return {**record, "status": "oom"}
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    total = time.perf_counter() - t0
    h = result.history
    per_epoch = h.seconds / h.epochs_run
    record.update(
        status="ok",
        epochs_run=h.epochs_run,
        stop_reason=h.stop_reason,
        total_seconds=total,  # preprocessing + training + prediction
        train_seconds=h.seconds,
        seconds_per_epoch=per_epoch,
        projected_seconds_at_max_epochs=per_epoch * epochs,
        final_loss=h.loss[-1],
        final_val_loss=h.val_loss[-1] if h.val_loss else None,
        final_lr=h.lr[-1],
        n_params=result.n_params,
        peak_rss_mb=peak_rss_mb(),
        rss_before_fit_mb=rss_before / 2**20,
        loadavg_1min_after=os.getloadavg()[0],
    )
    record["peak_rss_increase_mb"] = record["peak_rss_mb"] - record["rss_before_fit_mb"]
    if dev.type == "cuda":
        record["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return record


def _summary(r: dict) -> str:
    if r["status"] != "ok":
        return f"DCA {r['n_cells']} x {r['n_genes']} on {r['device']}: {r['status']}"
    lines = [
        f"DCA {r['n_cells']} cells x {r['n_genes']} genes on {r['device']} ({r['torch_threads']} torch threads, load "
        f"{r['loadavg_1min_before']:.1f} -> {r['loadavg_1min_after']:.1f})",
        f"  epochs run     : {r['epochs_run']} of {r['max_epochs']} ({r['stop_reason']}); final lr {r['final_lr']:.2g}",
        f"  training time  : {r['train_seconds']:.1f} s ({r['seconds_per_epoch']:.2f} s/epoch; all {r['max_epochs']} "
        f"epochs would take {r['projected_seconds_at_max_epochs']:.0f} s)",
        f"  total time     : {r['total_seconds']:.1f} s (normalize + train + predict)",
        f"  peak RSS       : {r['peak_rss_mb']:.0f} MiB since {r['peak_rss_since']} "
        f"(+{r['peak_rss_increase_mb']:.0f} MiB over {r['rss_before_fit_mb']:.0f} MiB before the fit)",
    ]
    if "cuda_peak_allocated_mb" in r:
        lines.append(f"  CUDA peak alloc: {r['cuda_peak_allocated_mb']:.0f} MiB")
    return "\n".join(lines)


def compare_with_package(
    masked: str | None,
    heldout: str,
    package_predictions: str,
    *,
    port_predictions: str | None = None,
    seed: int = 0,
    params: dict | None = None,
) -> dict:
    """Score the port and the ``dca`` package on the same masks; returns ``{"port": metrics,
    "package": metrics, "agreement": {...}}``.

    ``package_predictions`` is a ``predictions.npz`` in the protocol's format (``values``,
    ``mask_sha256``), as rule ``impute_dca_original`` writes it; a file made on other masks is an
    :class:`~scfmbench.InputError` (the fingerprint is checked). Without ``port_predictions`` the
    port runs here on ``masked`` (seed ``seed``, ``params`` over DCA's defaults) into a temporary file.
    """
    import tempfile

    from scfmbench.impute.base import pearson, read_npz
    from scfmbench.impute.methods import get_imputer
    from scfmbench.impute.protocol import run_imputer, score_imputation

    with tempfile.TemporaryDirectory() as tmp:
        if port_predictions is None:
            port_predictions = f"{tmp}/port.npz"
            run_imputer(get_imputer("dca"), masked, port_predictions, seed=seed, params=params or {}, name="dca")
        out = {
            "port": score_imputation(port_predictions, heldout),
            "package": score_imputation(package_predictions, heldout),
        }
        a = read_npz(port_predictions, ("values",))["values"].astype(np.float64)
        b = read_npz(package_predictions, ("values",))["values"].astype(np.float64)
    out["agreement"] = {"pearson": pearson(a, b), "mse": float(np.mean((a - b) ** 2)), "n_entries": int(a.size)}
    return out


def _comparison_summary(c: dict) -> str:
    lines = [f"{'metric':<14}{'port':>12}{'package':>12}{'port - pkg':>12}{'rel. diff':>11}"]
    for k in c["port"]:
        p, q = c["port"][k], c["package"].get(k, float("nan"))
        lines.append(f"{k:<14}{p:>12.5f}{q:>12.5f}{p - q:>+12.5f}{(p - q) / abs(q) if q else float('nan'):>+11.2%}")
    ag = c["agreement"]
    lines.append(
        f"port vs package predictions over {ag['n_entries']} masked entries: Pearson "
        f"{ag['pearson']:.5f}, MSE {ag['mse']:.5f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m scfmbench.bench.dca", description=__doc__.splitlines()[0])
    p.add_argument("--n-cells", type=int, default=10_000)
    p.add_argument("--n-genes", type=int, default=2_000)
    p.add_argument(
        "--epochs", type=int, default=DCAConfig().epochs, help="maximum epochs (early stopping may end sooner)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device; default CUDA when available")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--json", default=None, help="also write the record to this file")
    cmp = p.add_argument_group("comparison with the dca package (masking protocol files)")
    cmp.add_argument("--masked", default=None, help="masked.h5ad of rule make_masks")
    cmp.add_argument("--heldout", default=None, help="heldout.npz of rule make_masks")
    cmp.add_argument(
        "--package-predictions",
        default=None,
        help="the dca package's predictions.npz on those masks (rule impute_dca_original)",
    )
    cmp.add_argument("--port-predictions", default=None, help="the port's predictions.npz (default: run the port here)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.masked or args.heldout or args.package_predictions or args.port_predictions:
        if not (args.heldout and args.package_predictions and (args.masked or args.port_predictions)):
            p.error("the comparison needs --heldout, --package-predictions and --masked (or --port-predictions)")
        record = compare_with_package(
            args.masked, args.heldout, args.package_predictions, port_predictions=args.port_predictions, seed=args.seed
        )
        record["torch_threads"] = torch.get_num_threads()
        print(_comparison_summary(record))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(record, f, indent=2)
        return record
    record = run_benchmark(args.n_cells, args.n_genes, epochs=args.epochs, seed=args.seed, device=args.device)
    print(_summary(record))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
