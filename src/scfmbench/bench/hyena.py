"""Forward+backward time and peak memory of one scHyena block beside one full-attention block.

Usage::

    python -m scfmbench.bench.hyena [--lengths 1024 4096 16384 32768] [--d-model 128] [--batch 1]
        [--n-heads 4] [--device cpu] [--threads N] [--warmup 1] [--repeats 3] [--timeout 900]
        [--mem-limit-gb G] [--csv PATH]

Both models are the same pre-norm residual block (:class:`~scfmbench.models.hyena.HyenaBlock`:
``x + mixer(norm(x))``, then ``x + mlp(norm(x))``) and differ only in the token mixer: ``hyena``
is the bidirectional Hyena operator (order 2, filter order 64), ``full`` is
:class:`~scfmbench.models.attention.MultiHeadAttention` with the ``full`` kernel
(``torch.nn.functional.scaled_dot_product_attention``). They are the profiling mechanisms
``schyena`` and ``full-block`` (:mod:`scfmbench.profile.mechanisms`) at width ``d_model`` =
heads x head dim, measured by :mod:`scfmbench.profile.measure`, as the workflow's profiles are:
one step is forward on a (batch, L, d_model) input that requires grad, ``sum()``, backward;
``--warmup`` steps, then ``time_s`` = median of ``--repeats`` steps; each (model, L) point in a
fresh process; ``peak_mem_mb`` = peak over the timed steps minus the state after setup and
warm-up (weights and input are in the baseline; activations and gradients are counted).
Failures are rows: ``oom``, ``timeout`` (``--timeout`` seconds per point), ``error``.
``--mem-limit-gb`` caps each point's memory (CPU: address space beyond its size after imports).
"""

from __future__ import annotations

import argparse
import sys

from scfmbench.profile.measure import PointSpec, sweep
from scfmbench.profile.measure import measure_point as _measure

MODELS = ("hyena", "full")
COLUMNS = ["model", "L", "d_model", "batch", "time_s", "peak_mem_mb", "status"]
MECHANISM = {"hyena": "schyena", "full": "full-block"}


def _spec(
    model: str,
    *,
    length: int,
    d_model: int,
    batch: int,
    n_heads: int = 4,
    device: str = "cpu",
    warmup: int = 1,
    repeats: int = 3,
    threads: int | None = None,
) -> PointSpec:
    if model not in MECHANISM:
        raise ValueError(f"unknown model {model!r}; choose from {MODELS}")
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
    return PointSpec(
        MECHANISM[model],
        length,
        batch,
        "backward",
        heads=n_heads,
        dim=d_model // n_heads,
        device=device,
        warmup=warmup,
        repeats=repeats,
        threads=threads,
    )


def _short(model: str, row: dict) -> dict:
    status = (
        row["status"] if not row["message"] or row["status"] in ("ok", "oom", "timeout") else f"error: {row['message']}"
    )
    return dict(
        model=model,
        L=row["L"],
        d_model=row["heads"] * row["dim"],
        batch=row["batch"],
        time_s=row["time_median_s"],
        peak_mem_mb=row["peak_mem_mb"],
        status=status,
    )


def measure_point(
    model: str,
    *,
    length: int,
    d_model: int,
    batch: int,
    n_heads: int = 4,
    device: str = "cpu",
    warmup: int = 1,
    repeats: int = 3,
    mem_limit_gb: float | None = None,
) -> dict:
    """Time and peak memory of one block's forward+backward, in this process (``mem_limit_gb`` caps
    this process: only for a process of its own)."""
    spec = _spec(
        model,
        length=length,
        d_model=d_model,
        batch=batch,
        n_heads=n_heads,
        device=device,
        warmup=warmup,
        repeats=repeats,
    )
    if mem_limit_gb is not None:
        from scfmbench.profile.measure import apply_memory_cap, resolve_device

        apply_memory_cap(mem_limit_gb, resolve_device(device))
    return _short(model, _measure(spec))


def run(
    lengths: list[int],
    *,
    models: tuple[str, ...] = MODELS,
    timeout: float = 900.0,
    mem_limit_gb: float | None = None,
    **options,
) -> list[dict]:
    """One row per (model, L), each from its own process; ``options`` as :func:`measure_point`'s."""
    pairs = [(model, length) for length in lengths for model in models]
    rows = sweep([_spec(m, length=L, **options) for m, L in pairs], timeout_s=timeout, max_mem_gb=mem_limit_gb)
    return [_short(m, r) for (m, _), r in zip(pairs, rows)]


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
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads per point (default: torch's)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per (model, L) point")
    parser.add_argument("--mem-limit-gb", type=float, default=None, help="memory cap per point, GiB")
    parser.add_argument("--csv", default=None, help="write the rows here")
    args = parser.parse_args(argv)

    rows = run(
        args.lengths,
        models=tuple(args.models),
        d_model=args.d_model,
        batch=args.batch,
        n_heads=args.n_heads,
        device=args.device,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        timeout=args.timeout,
        mem_limit_gb=args.mem_limit_gb,
    )
    print(f"one block, forward+backward, device={args.device}, threads={args.threads or 'default'}")
    print(format_table(rows))
    if args.csv:
        import pandas as pd

        from scfmbench._io import write_csv

        write_csv(pd.DataFrame(rows, columns=COLUMNS), args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
