"""Forward+backward time and peak memory of one scHyena block beside one full-attention block.

Usage::

    python -m scfmbench.bench.hyena [--lengths 1024 4096 16384 32768] [--d-model 128] [--batch 1]
        [--n-heads 4] [--device cpu] [--threads N] [--warmup 1] [--repeats 3] [--timeout 900]
        [--mem-limit-gb G] [--csv PATH]

Both models are the same pre-norm residual block (:class:`~scfmbench.models.hyena.HyenaBlock`:
``x + mixer(norm(x))``, then ``x + mlp(norm(x))``) and differ only in the token mixer: ``hyena``
is the bidirectional Hyena operator (order 2, filter order 64), ``full`` is
:class:`~scfmbench.models.attention.MultiHeadAttention` with the ``full`` kernel
(``torch.nn.functional.scaled_dot_product_attention``). One step is forward on a (batch, L,
d_model) float32 input that requires grad, ``sum()``, backward. ``--warmup`` steps run first, then
``time_s`` is the median of ``--repeats`` timed steps (``torch.cuda.synchronize`` around each on
CUDA).

Every (model, L) point runs in a fresh subprocess, so one point's allocations cannot hide the next
one's peak and an out-of-memory kill only loses that point. ``peak_mem_mb``: on CPU, the worker's
peak resident set (``ru_maxrss``) minus its resident set right after imports, so it counts the
block's weights and gradients, the input and all activations; on CUDA, ``max_memory_allocated``
after a reset minus the memory allocated before the block is built. Failures are rows, not
crashes: ``oom`` (allocator error, CUDA OOM, or the worker killed by the kernel), ``timeout``
(``--timeout`` seconds per point), ``error: ...``. ``--mem-limit-gb`` caps each CPU worker's
address space at its size after imports plus that many GiB (``RLIMIT_AS``), so an oversized point
fails inside the worker instead of waking the machine's OOM killer.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

MODELS = ("hyena", "full")
COLUMNS = ["model", "L", "d_model", "batch", "time_s", "peak_mem_mb", "status"]
_RESULT = "BENCH_RESULT "  # prefix of the worker's one result line on stdout


def build_block(model: str, *, d_model: int, length: int, n_heads: int):
    """One block of ``model`` ('hyena' or 'full') for inputs of ``length`` tokens."""
    from scfmbench.models.attention import MultiHeadAttention
    from scfmbench.models.hyena import HyenaBlock

    if model == "hyena":
        return HyenaBlock(d_model, l_max=length)
    if model == "full":
        return HyenaBlock(d_model, mixer=MultiHeadAttention(d_model, n_heads, kernel="full"))
    raise ValueError(f"unknown model {model!r}; choose from {MODELS}")


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg or "not enough memory" in msg)


def measure_point(model: str, *, length: int, d_model: int, batch: int, n_heads: int = 4, device: str = "cpu", warmup: int = 1, repeats: int = 3, mem_limit_gb: float | None = None) -> dict:
    """Time and peak memory of one block's forward+backward, in this process (the worker's job).

    Call it in a fresh process: the CPU memory figure is a high-water mark since process start.
    """
    import psutil
    import torch

    row = dict(model=model, L=length, d_model=d_model, batch=batch, time_s=math.nan, peak_mem_mb=math.nan, status="ok")
    on_cuda = device.startswith("cuda")
    proc = psutil.Process()
    # Prime: one step at 8 tokens loads the lazily initialised kernels (BLAS, FFT, thread pools)
    # before the baseline, so their code pages are not counted as activation memory.
    tiny = build_block(model, d_model=d_model, length=8, n_heads=n_heads).to(device)
    tiny(torch.randn(1, 8, d_model, device=device, requires_grad=True)).sum().backward()
    del tiny
    if on_cuda:
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = proc.memory_info().rss
        if mem_limit_gb is not None:
            cap = proc.memory_info().vms + int(mem_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def sync():
        if on_cuda:
            torch.cuda.synchronize(device)

    try:
        torch.manual_seed(0)
        block = build_block(model, d_model=d_model, length=length, n_heads=n_heads).to(device)
        x = torch.randn(batch, length, d_model, device=device, requires_grad=True)

        def step():
            block.zero_grad(set_to_none=True)
            x.grad = None
            block(x).sum().backward()

        for _ in range(warmup):
            step()
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
        row["time_s"] = statistics.median(times)
    except Exception as exc:  # noqa: BLE001 -- every failure becomes a result row
        row["status"] = "oom" if _is_oom(exc) else f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    if on_cuda:
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base  # ru_maxrss is KiB on Linux
    row["peak_mem_mb"] = peak / 2**20
    return row


def run_point(model: str, *, length: int, d_model: int, batch: int, n_heads: int = 4, device: str = "cpu", threads: int | None = None, warmup: int = 1, repeats: int = 3, timeout: float = 900.0, mem_limit_gb: float | None = None) -> dict:
    """Run :func:`measure_point` in a fresh ``python -m scfmbench.bench.hyena --worker`` process."""
    cmd = [sys.executable, "-m", "scfmbench.bench.hyena", "--worker", model, "--lengths", str(length), "--d-model", str(d_model), "--batch", str(batch), "--n-heads", str(n_heads), "--device", device, "--warmup", str(warmup), "--repeats", str(repeats)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if mem_limit_gb is not None:
        cmd += ["--mem-limit-gb", str(mem_limit_gb)]
    row = dict(model=model, L=length, d_model=d_model, batch=batch, time_s=math.nan, peak_mem_mb=math.nan)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": "timeout"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT):
            return json.loads(line[len(_RESULT) :])
    if proc.returncode in (-9, 137):  # SIGKILL: almost always the kernel's OOM killer
        return {**row, "status": "oom"}
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return {**row, "status": f"error: exit {proc.returncode}: {tail}"}


def run(lengths: list[int], *, models: tuple[str, ...] = MODELS, **options) -> list[dict]:
    """One row per (model, L), each from its own worker process; ``options`` go to :func:`run_point`."""
    return [run_point(model, length=length, **options) for length in lengths for model in models]


def format_table(rows: list[dict]) -> str:
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS).to_string(index=False, float_format=lambda v: f"{v:.4g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scfmbench.bench.hyena", description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 32768])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--n-heads", type=int, default=4, help="attention heads of the 'full' block")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads per worker (default: torch's)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per (model, L) point")
    parser.add_argument("--mem-limit-gb", type=float, default=None, help="CPU only: extra address space per worker, GiB")
    parser.add_argument("--csv", default=None, help="write the rows here")
    parser.add_argument("--worker", default=None, choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:  # inside a fresh process: one point, one result line
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        row = measure_point(args.worker, length=args.lengths[0], d_model=args.d_model, batch=args.batch, n_heads=args.n_heads, device=args.device, warmup=args.warmup, repeats=args.repeats, mem_limit_gb=args.mem_limit_gb)
        print(_RESULT + json.dumps(row), flush=True)
        return 0

    rows = run(args.lengths, models=tuple(args.models), d_model=args.d_model, batch=args.batch, n_heads=args.n_heads, device=args.device, threads=args.threads, warmup=args.warmup, repeats=args.repeats, timeout=args.timeout, mem_limit_gb=args.mem_limit_gb)
    print(f"one block, forward+backward, device={args.device}, threads={args.threads or 'default'}")
    print(format_table(rows))
    if args.csv:
        import pandas as pd

        from scfmbench._io import write_csv

        write_csv(pd.DataFrame(rows, columns=COLUMNS), args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
