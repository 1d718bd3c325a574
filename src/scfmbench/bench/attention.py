"""Attention micro-benchmark: forward + backward time and peak memory per kernel and length.

    python -m scfmbench.bench.attention [--lengths 512 1024 ...] [--batch 8] [--heads 4] [--dim 32]
        [--degree 30] [--repeats 3] [--warmup 1] [--kernels ...] [--device cpu|cuda] [--csv PATH]

Every registered kernel runs beside three known implementations:

- ``hf-longformer``: Hugging Face ``LongformerSelfAttention`` (window 64, global token 0),
- ``hf-bigbird``: Hugging Face ``BigBirdBlockSparseAttention`` (block 64, 3 random blocks; it
  needs L >= (5 + 2 * 3) * 64 = 704 and a multiple of 64, otherwise the row reads ``error``),
- ``performer-pytorch``: ``performer_pytorch.FastAttention`` on (B, H, L, D).

The Hugging Face modules include their q/k/v projections (they cannot be called without them);
the kernels and FastAttention take q, k, v directly.

Protocol (nanoGPT ``bench.py``, xformers ``benchmarks/utils.py``; REFERENCE.md section 1 lists
what the paper's Fig. 4c got wrong): each (kernel, L) point runs in a fresh subprocess; inputs,
the edge pattern and the kernel are built first (pattern construction is data preparation and is
not timed, but compiling it into the CSR structure is: the cache is cleared before every call);
then ``--warmup`` untimed and ``--repeats`` timed forward + backward passes, ``time_s`` = median.
Peak memory is the extra memory over the state after setup and warm-up, over the timed passes
(one fwd + bwd at a time; gradients are dropped after each):
CUDA ``max_memory_allocated`` after ``reset_peak_memory_stats`` minus ``memory_allocated``;
CPU the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) minus
its resident set after setup (``malloc_trim`` first), falling back to a ``ru_maxrss`` delta where
``clear_refs`` is not available. Out of memory (an allocator error, or the subprocess killed)
is a row with status ``oom``; any other failure or a ``--timeout`` is ``error``.

Graph kernels (``needs_edges``) run on the subgraphs a random gene graph induces in each cell:
2L genes with in-degree 2 * degree, each cell carrying a random half of them (so mean in-degree
~ degree, plus a self-loop and the CLS token 0), built with ``graph_pattern``.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

KNOWN = ("hf-longformer", "hf-bigbird", "performer-pytorch")
COLUMNS = ("kernel", "L", "batch", "heads", "dim", "time_s", "peak_mem_mb", "status")
DEFAULT_LENGTHS = (512, 1024, 2048, 4096, 8192, 16384)


def all_kernels() -> list[str]:
    from scfmbench.models.attention import KERNELS

    return list(KERNELS) + list(KNOWN)


# ---------------------------------------------------------------------------------------------
# inputs


def random_graph_pattern(L: int, batch: int, degree: int, seed: int, device):
    """Per-cell induced subgraphs of a random gene graph with mean in-degree ~ ``degree``."""
    import scipy.sparse as sp

    from scfmbench.models.attention import graph_pattern

    rng = np.random.default_rng(seed)
    G = 2 * L
    n_edges = G * 2 * degree
    src, dst = rng.integers(0, G, n_edges), rng.integers(0, G, n_edges)
    adjacency = sp.csr_matrix((np.ones(n_edges, dtype=np.float32), (src, dst)), shape=(G, G))
    genes = np.stack([rng.permutation(G)[:L] for _ in range(batch)])
    return graph_pattern(adjacency, torch.as_tensor(genes, device=device), n_global=1)


def _setup(kernel: str, L: int, batch: int, heads: int, dim: int, degree: int, seed: int, device):
    """Build inputs and a closure running one forward + backward."""
    torch.manual_seed(seed)
    qkv = [torch.randn(batch, heads, L, dim, device=device, requires_grad=True) for _ in range(3)]
    params = list(qkv)

    if kernel == "hf-longformer":
        from transformers import LongformerConfig
        from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

        cfg = LongformerConfig(hidden_size=heads * dim, num_attention_heads=heads, attention_window=[64], attention_probs_dropout_prob=0.0)
        module = LongformerSelfAttention(cfg, layer_id=0).to(device)
        x = torch.randn(batch, L, heads * dim, device=device, requires_grad=True)
        mask = torch.zeros(batch, L, device=device)
        mask[:, 0] = 10000.0  # global attention on token 0, as the window kernels
        is_masked, is_global = mask < 0, mask > 0

        def step():
            return module(x, attention_mask=mask, is_index_masked=is_masked, is_index_global_attn=is_global, is_global_attn=True)[0]

        params = [x]
    elif kernel == "hf-bigbird":
        from transformers import BigBirdConfig
        from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention, BigBirdModel

        cfg = BigBirdConfig(hidden_size=heads * dim, num_attention_heads=heads, attention_type="block_sparse", block_size=64, num_random_blocks=3, max_position_embeddings=max(L, 4096))
        if L < (5 + 2 * cfg.num_random_blocks) * cfg.block_size or L % cfg.block_size:
            raise ValueError(f"BigBird block-sparse needs L >= {(5 + 2 * cfg.num_random_blocks) * cfg.block_size} and a multiple of {cfg.block_size}")
        module = BigBirdBlockSparseAttention(cfg, seed=seed).to(device)
        x = torch.randn(batch, L, heads * dim, device=device, requires_grad=True)
        blocked, band, from_mask, to_mask = BigBirdModel.create_masks_for_block_sparse_attn(torch.ones(batch, L, device=device), cfg.block_size)

        def step():
            return module(x, band_mask=band, from_mask=from_mask, to_mask=to_mask, from_blocked_mask=blocked, to_blocked_mask=blocked)[0]

        params = [x]
    elif kernel == "performer-pytorch":
        from performer_pytorch import FastAttention

        module = FastAttention(dim_heads=dim).to(device)

        def step():
            return module(*qkv)
    else:
        from scfmbench.models.attention import build_kernel

        module = build_kernel(kernel).to(device)
        edges = random_graph_pattern(L, batch, degree, seed, device) if module.needs_edges else None
        if edges is None and hasattr(module, "pattern"):
            edges = module.pattern(L, None, device)  # build the fixed pattern now, outside the timing

        def step():
            if edges is not None:
                edges.clear_cache()  # time the CSR compilation too
            return module(*qkv, key_padding_mask=None, edges=edges)

    def run():
        out = step()
        out.sum().backward()
        for p in params:
            p.grad = None

    return run


# ---------------------------------------------------------------------------------------------
# memory probes


def _rss_kb() -> tuple[int, int]:
    """(current, peak) resident set in kB from /proc/self/status."""
    text = open("/proc/self/status").read()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)), int(re.search(r"VmHWM:\s+(\d+)", text).group(1))


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _PeakMemory:
    """Extra peak memory (MB) of the code run between ``start()`` and ``stop()``."""

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        _malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
            self.mode = "hwm"
            self.base = _rss_kb()[0]
        except OSError:  # ru_maxrss cannot be reset: a delta over the setup's peak may undercount
            self.mode = "maxrss"
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def stop(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        peak = _rss_kb()[1] if self.mode == "hwm" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(peak - self.base, 0) / 1024


# ---------------------------------------------------------------------------------------------
# one point (in the subprocess) and the sweep (in the parent)


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text


def measure_point(kernel: str, L: int, *, batch: int, heads: int, dim: int, degree: int, repeats: int, warmup: int, device: str, seed: int = 0,
                  threads: int | None = None) -> dict:
    """Time (median of ``repeats``) and extra peak memory of one forward + backward."""
    dev = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    row = dict(kernel=kernel, L=L, batch=batch, heads=heads, dim=dim, time_s=math.nan, peak_mem_mb=math.nan, status="ok")
    try:
        run = _setup(kernel, L, batch, heads, dim, degree, seed, dev)
        for _ in range(warmup):  # before the memory probe: lazy initialisation is not the kernel's
            run()
        probe = _PeakMemory(dev)
        probe.start()
        times = []
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            run()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
        row["peak_mem_mb"] = round(probe.stop(), 2)
        row["time_s"] = round(statistics.median(times), 5)
    except Exception as exc:  # a failed point is a result row, not a crash of the sweep
        row["status"] = "oom" if _is_oom(exc) else "error"
        row["message"] = f"{type(exc).__name__}: {exc}"[:300]
    return row


def run_point_subprocess(kernel: str, L: int, *, timeout: float | None, max_mem_gb: float | None, **options) -> dict:
    spec = dict(kernel=kernel, L=L, max_mem_gb=max_mem_gb, **options)
    cmd = [sys.executable, "-m", "scfmbench.bench.attention", "--point", json.dumps(spec)]
    base = dict(kernel=kernel, L=L, batch=options["batch"], heads=options["heads"], dim=options["dim"], time_s=math.nan, peak_mem_mb=math.nan)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(base, status="error", message=f"timeout after {timeout} s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    if proc.returncode in (-9, 137):  # killed, almost always by the kernel's OOM killer
        return dict(base, status="oom", message="subprocess killed (SIGKILL)")
    return dict(base, status="error", message=(proc.stderr.strip().splitlines() or ["no output"])[-1][:300])


def _point_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    max_mem_gb = spec.pop("max_mem_gb", None)
    if max_mem_gb:  # allocations past the cap fail with an allocator error -> status oom
        cap = int(max_mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    kernel, L = spec.pop("kernel"), spec.pop("L")
    print("RESULT " + json.dumps(measure_point(kernel, L, **spec)), flush=True)


def format_table(rows: list[dict]) -> str:
    lines = [f"{'kernel':<18} {'L':>6} {'time_s':>10} {'peak_mem_mb':>12}  status"]
    for r in rows:
        t = "-" if r["time_s"] != r["time_s"] else f"{r['time_s']:.4f}"
        m = "-" if r["peak_mem_mb"] != r["peak_mem_mb"] else f"{r['peak_mem_mb']:.1f}"
        note = f"  ({r['message']})" if r.get("message") else ""
        lines.append(f"{r['kernel']:<18} {r['L']:>6} {t:>10} {m:>12}  {r['status']}{note}")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def run_sweep(*, kernels: list[str], lengths: list[int], timeout: float | None = None, max_mem_gb: float | None = None, verbose: bool = True, **options) -> list[dict]:
    """Every (kernel, L) point in its own subprocess; one row each."""
    rows = []
    for L in lengths:
        for kernel in kernels:
            row = run_point_subprocess(kernel, L, timeout=timeout, max_mem_gb=max_mem_gb, **options)
            rows.append(row)
            if verbose:
                print(format_table([row]).splitlines()[1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict] | None:
    parser = argparse.ArgumentParser(prog="python -m scfmbench.bench.attention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--degree", type=int, default=30, help="mean in-degree of the graph kernels' cell graphs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--kernels", nargs="+", default=None, help=f"default: all registered kernels plus {', '.join(KNOWN)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per point (default: torch's choice)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per point (status error when exceeded)")
    parser.add_argument("--max-mem-gb", type=float, default=None, help="CPU: cap each point's data segment (status oom past it)")
    parser.add_argument("--csv", default=None, help="write one row per (kernel, L) here")
    parser.add_argument("--point", default=None, help=argparse.SUPPRESS)  # internal: run one point
    args = parser.parse_args(argv)
    if args.point is not None:
        _point_main(args.point)
        return None
    kernels = args.kernels or all_kernels()
    unknown = sorted(set(kernels) - set(all_kernels()))
    if unknown:
        parser.error(f"unknown kernels {unknown}; choose from {all_kernels()}")
    print(f"device {args.device}, batch {args.batch}, heads {args.heads}, dim {args.dim}, degree {args.degree}, repeats {args.repeats}, "
          f"threads {args.threads or torch.get_num_threads()}", flush=True)
    print(format_table([]), flush=True)
    rows = run_sweep(kernels=kernels, lengths=args.lengths, timeout=args.timeout, max_mem_gb=args.max_mem_gb, batch=args.batch, heads=args.heads,
                     dim=args.dim, degree=args.degree, repeats=args.repeats, warmup=args.warmup, device=args.device, seed=args.seed,
                     threads=args.threads)
    if args.csv:
        write_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
