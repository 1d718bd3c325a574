"""The measured region: time and peak memory of one profiling point, in a fresh process.

Protocol (nanoGPT ``bench.py``, xformers ``benchmarks/utils.py``; REFERENCE.md section 1 lists
what GenoHoption's Fig. 4c got wrong: no warm-up, no baseline, inputs counted):

1. A fresh Python process (:func:`run_point`) caps its memory
   (``max_mem_gb``: on CPU ``RLIMIT_AS`` at its address space after imports plus that much, on
   CUDA ``set_per_process_memory_fraction``), builds the mechanism's inputs, modules and edge
   patterns (setup, not measured), and runs ``warmup`` untimed passes (lazy initialisation and
   first-call allocations are not the mechanism's).
2. Memory baseline (:class:`PeakMemory`): CUDA ``reset_peak_memory_stats`` and
   ``memory_allocated``; CPU ``malloc_trim``, then ``/proc/self/clear_refs`` (``5``) resets the
   kernel's resident-set high-water mark ``VmHWM`` to the current ``VmRSS``, the baseline.
3. ``repeats`` timed passes (``torch.cuda.synchronize`` around each on CUDA); ``time`` median
   and inter-quartile range; with ``max_repeat_time_s`` the repeats stop early once they used
   that much time (at least :data:`MIN_REPEATS`), and ``n_repeats`` says how many ran.
4. Peak memory = high-water mark over the timed passes minus the baseline: CUDA
   ``max_memory_allocated``, CPU ``VmHWM`` (where ``clear_refs`` is not writable, ``ru_maxrss``,
   which cannot be reset: ``mem_method`` says which). Inputs, weights and the edge pattern are
   in the baseline; activations, gradients, workspaces and compiled sparse structures are not.

A pass is ``forward`` (under ``torch.no_grad``: inference) or ``backward`` (forward with
autograd, ``out.sum().backward()``, gradients dropped after each pass). Out of memory (an
allocator error under the cap, CUDA OOM, or the process killed) is a row with status ``oom``;
the wall-clock limit ``timeout_s`` on the whole process is status ``timeout``; anything else
``error``; the message says what happened. A point never raises: a sweep always completes.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from scfmbench._rss import peak_rss_mb, reset_peak_rss
from scfmbench.profile.mechanisms import Shape

PASSES = ("forward", "backward")
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")
STATUSES = ("ok", "oom", "timeout", "error")
MIN_REPEATS = 3
COLUMNS = (
    "mechanism",
    "pass",
    "L",
    "batch",
    "heads",
    "dim",
    "dtype",
    "device",
    "status",
    "time_median_s",
    "time_q25_s",
    "time_q75_s",
    "time_iqr_s",
    "n_repeats",
    "warmup",
    "tokens_per_s",
    "peak_mem_mb",
    "mem_method",
    "max_mem_gb",
    "timeout_s",
    "threads",
    "seed",
    "device_name",
    "torch_version",
    "cuda_version",
    "message",
)
TEXT_COLUMNS = (
    "mechanism",
    "pass",
    "dtype",
    "device",
    "status",
    "mem_method",
    "device_name",
    "torch_version",
    "cuda_version",
    "message",
)
_RESULT = "PROFILE_RESULT "  # prefix of the child's one result line on stdout
_CHILD = "import sys; from scfmbench.profile.measure import child_main; child_main(*sys.argv[1:])"


@dataclass(frozen=True)
class PointSpec:
    """One profiling point: a mechanism at one (length, batch, pass) and how to measure it."""

    mechanism: str
    length: int
    batch: int = 1
    mode: str = "backward"  # the pass: 'forward' or 'backward' (= forward + backward)
    heads: int = 4
    dim: int = 32
    degree: int = 30
    hops: int = 6
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    warmup: int = 1
    repeats: int = 10
    max_repeat_time_s: float | None = None
    threads: int | None = None

    def __post_init__(self):
        from scfmbench import InputError

        if self.mode not in PASSES:
            raise InputError(f"pass must be one of {PASSES}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise InputError(f"device must be one of {DEVICES} (or cuda:N), got {self.device!r}")
        if self.repeats < 1 or self.warmup < 0:
            raise InputError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats}, {self.warmup}")

    @property
    def shape(self) -> Shape:
        return Shape(
            length=self.length,
            batch=self.batch,
            heads=self.heads,
            dim=self.dim,
            degree=self.degree,
            hops=self.hops,
            seed=self.seed,
        )

    @classmethod
    def from_settings(
        cls, mechanism: str, length: int, batch: int, mode: str, settings: dict, *, threads: int | None = None
    ) -> PointSpec:
        """From the config's ``profile`` block (keys that are not PointSpec fields are ignored)."""
        names = {f.name for f in fields(cls)} - {"mechanism", "length", "batch", "mode", "threads"}
        return cls(
            mechanism=mechanism,
            length=int(length),
            batch=int(batch),
            mode=mode,
            threads=threads,
            **{k: v for k, v in settings.items() if k in names},
        )


# ---------------------------------------------------------------------------------------------
# memory probes


def _status_kb(*names: str) -> list[int]:
    """Fields of /proc/self/status in kB (VmRSS, VmHWM, VmSize, ...)."""
    text = Path("/proc/self/status").read_text()
    return [int(re.search(rf"{name}:\s+(\d+)", text).group(1)) for name in names]


def _malloc_trim() -> None:
    """Return freed heap pages to the OS, so the baseline RSS holds no allocator leftovers."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class PeakMemory:
    """Extra peak memory (MB = 2^20 bytes) of the code run between :meth:`start` and :meth:`stop`.

    ``method``: ``cuda_max_allocated``, ``vmhwm`` (CPU, resettable high-water mark) or
    ``ru_maxrss`` (CPU fallback; counts only peaks above the process's earlier maximum).
    """

    def __init__(self, device):
        self.device = device
        self.method = "cuda_max_allocated" if device.type == "cuda" else "vmhwm"

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        _malloc_trim()
        if reset_peak_rss():  # VmHWM now equals the current VmRSS
            self.method = "vmhwm"
            self.base = _status_kb("VmRSS")[0] * 1024
        else:
            self.method = "ru_maxrss"
            self.base = peak_rss_mb() * 2**20

    def stop(self) -> float:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        if self.method == "vmhwm":
            peak = _status_kb("VmHWM")[0] * 1024
        else:
            peak = peak_rss_mb() * 2**20
        return max(peak - self.base, 0) / 2**20


def apply_memory_cap(max_mem_gb: float | None, device) -> None:
    """Cap this process: CPU ``RLIMIT_AS`` = address space now + ``max_mem_gb`` GiB (call after
    imports); CUDA the caching allocator's share of the device. Past the cap allocations fail
    with an allocator error instead of waking the machine's OOM killer."""
    if not max_mem_gb:
        return
    cap = int(max_mem_gb * 2**30)
    if device.type == "cuda":
        import torch

        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)
        return
    limit = _status_kb("VmSize")[0] * 1024 + cap
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


# ---------------------------------------------------------------------------------------------
# the measured region


def measure_region(step, *, device, warmup: int = 1, repeats: int = 10, max_repeat_time_s: float | None = None) -> dict:
    """Run ``step()`` ``warmup`` times, then time ``repeats`` calls under a :class:`PeakMemory` probe.

    Returns ``times`` (s, one per timed call), ``peak_mem_mb`` and ``mem_method``. ``step`` must
    not keep what it allocates (the next call's baseline would include it).
    """
    import torch

    device = torch.device(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    probe = PeakMemory(device)
    probe.start()
    times: list[float] = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        if max_repeat_time_s is not None and len(times) >= MIN_REPEATS and sum(times) >= max_repeat_time_s:
            break
    return {"times": times, "peak_mem_mb": probe.stop(), "mem_method": probe.method}


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return any(
        s in text
        for s in ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory", "bad_alloc")
    )


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _cpu_name() -> str:
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    except OSError:
        match = None
    return match.group(1).strip() if match else (platform.processor() or platform.machine())


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _torch_version() -> str:
    torch = sys.modules.get("torch")  # the measured process has it; the job process must not import it
    return torch.__version__ if torch is not None else _version("torch")


def base_row(spec: PointSpec) -> dict:
    """A row with the point's settings and no measurement yet (what a failed point reports)."""
    nan = math.nan
    return dict(
        mechanism=spec.mechanism,
        **{"pass": spec.mode},
        L=spec.length,
        batch=spec.batch,
        heads=spec.heads,
        dim=spec.dim,
        dtype=spec.dtype,
        device=spec.device,
        status="error",
        time_median_s=nan,
        time_q25_s=nan,
        time_q75_s=nan,
        time_iqr_s=nan,
        n_repeats=0,
        warmup=spec.warmup,
        tokens_per_s=nan,
        peak_mem_mb=nan,
        mem_method="",
        max_mem_gb=nan,
        timeout_s=nan,
        threads=spec.threads or 0,
        seed=spec.seed,
        device_name="",
        torch_version=_torch_version(),
        cuda_version="",
        message="",
    )


def _message(where: str, exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{where}: {type(exc).__name__}: {text[0][:300] if text else ''}"


def measure_point(spec: PointSpec) -> dict:
    """Measure ``spec`` in this process and return its row (call it in a fresh process: see
    :func:`run_point`). Setup or measurement failures become the row's status, never raise."""
    import torch

    from scfmbench.profile.mechanisms import build_workload

    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = resolve_device(spec.device)
    row = base_row(spec)
    row.update(
        device=str(device),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        cuda_version=str(torch.version.cuda or ""),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
    )
    try:
        workload = build_workload(spec.mechanism, spec.shape, device, getattr(torch, spec.dtype))
    except Exception as exc:  # noqa: BLE001 -- a point's failure is its row
        row.update(status="oom" if is_oom(exc) else "error", message=_message("setup", exc))
        return row

    if spec.mode == "forward":

        def step():
            with torch.no_grad():
                workload.forward()
    else:

        def step():
            workload.forward().sum().backward()
            workload.clear_grads()

    try:
        result = measure_region(
            step, device=device, warmup=spec.warmup, repeats=spec.repeats, max_repeat_time_s=spec.max_repeat_time_s
        )
    except Exception as exc:  # noqa: BLE001
        row.update(status="oom" if is_oom(exc) else "error", message=_message("measure", exc))
        return row
    times = sorted(result["times"])
    q25, median, q75 = (float(q) for q in _quantiles(times))
    row.update(
        status="ok",
        time_median_s=median,
        time_q25_s=q25,
        time_q75_s=q75,
        time_iqr_s=q75 - q25,
        n_repeats=len(times),
        tokens_per_s=spec.batch * spec.length / median if median > 0 else math.nan,
        peak_mem_mb=result["peak_mem_mb"],
        mem_method=result["mem_method"],
    )
    return row


def _quantiles(values: list[float]) -> tuple[float, float, float]:
    """(25th, 50th, 75th) percentiles, linear interpolation (numpy's default)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


# ---------------------------------------------------------------------------------------------
# one point in a fresh process, and a sweep


def run_point(spec: PointSpec, *, timeout_s: float | None = None, max_mem_gb: float | None = None) -> dict:
    """Measure ``spec`` in a fresh Python process (:func:`child_main`); one row.

    The child's stderr is copied to this process's stderr (the job log).
    """
    cmd = [sys.executable, "-c", _CHILD, json.dumps(asdict(spec)), json.dumps(max_mem_gb)]
    env = dict(os.environ)
    if spec.threads:  # BLAS/OpenMP pools sized before torch.set_num_threads runs
        env.update(
            OMP_NUM_THREADS=str(spec.threads), MKL_NUM_THREADS=str(spec.threads), OPENBLAS_NUM_THREADS=str(spec.threads)
        )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:  # the child is killed by subprocess.run
        _forward_stderr(exc.stderr)
        row = base_row(spec)
        row.update(status="timeout", message=f"no result within timeout_s={timeout_s} s (process killed)")
    else:
        _forward_stderr(proc.stderr)
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(_RESULT):
                row = json.loads(line[len(_RESULT) :])
                break
        else:
            row = base_row(spec)
            if proc.returncode in (-9, 137):  # SIGKILL: almost always the kernel's OOM killer
                row.update(status="oom", message="process killed (SIGKILL), most likely by the out-of-memory killer")
            else:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
                row.update(status="error", message=f"process exited with {proc.returncode}: {tail}")
    row.update(
        max_mem_gb=math.nan if max_mem_gb is None else float(max_mem_gb),
        timeout_s=math.nan if timeout_s is None else float(timeout_s),
    )
    return row


def _forward_stderr(text) -> None:
    if text:
        sys.stderr.write(text if isinstance(text, str) else text.decode(errors="replace"))
        sys.stderr.flush()


def sweep(specs, *, timeout_s: float | None = None, max_mem_gb: float | None = None, on_row=None) -> list[dict]:
    """Every point in its own process, one after the other; one row each (failures included)."""
    rows = []
    for spec in specs:
        row = run_point(spec, timeout_s=timeout_s, max_mem_gb=max_mem_gb)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def write_rows(rows: list[dict], path) -> None:
    """Rows as CSV with :data:`COLUMNS` (atomically)."""
    import pandas as pd

    from scfmbench._io import write_csv

    write_csv(pd.DataFrame(rows, columns=list(COLUMNS)), path)


def _csv_cell(value) -> str:
    """A value as pandas' ``to_csv`` writes it: NaN/None empty, floats round-tripping."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)  # float(): numpy 2 reprs np.float64(...)


def write_row(row: dict, path) -> None:
    """One row as CSV with :data:`COLUMNS`, atomically: the same file :func:`write_rows` writes,
    without importing pandas (the workflow's job process stays light)."""
    import csv
    import io
    import tempfile

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerow([_csv_cell(row.get(c)) for c in COLUMNS])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".csv", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def profile_point(
    *, mechanism: str, length: int, batch: int, mode: str, settings: dict, output, threads: int | None = None
) -> dict:
    """The workflow's ``profile_point`` job: one point from the config's ``profile`` block, in a
    fresh process under its memory cap and time-out, written to ``output`` as a one-row CSV."""
    import logging

    spec = PointSpec.from_settings(mechanism, length, batch, mode, settings, threads=threads)
    row = run_point(spec, timeout_s=settings.get("timeout_s"), max_mem_gb=settings.get("max_mem_gb"))
    logging.getLogger(__name__).info(
        "%s",
        {k: row[k] for k in ("mechanism", "pass", "L", "batch", "status", "time_median_s", "peak_mem_mb", "message")},
    )
    write_row(row, output)
    return row


def child_main(spec_json: str, max_mem_gb_json: str) -> None:
    """The measured process: cap memory, measure, print one result line (run by :func:`run_point`)."""
    from scfmbench._smk import fast_exit

    fast_exit()
    spec = PointSpec(**json.loads(spec_json))
    try:
        import torch  # noqa: F401 -- imported before the cap: the cap is on top of the imports

        import scfmbench.models.attention  # noqa: F401

        apply_memory_cap(json.loads(max_mem_gb_json), resolve_device(spec.device))
    except Exception as exc:  # noqa: BLE001
        row = base_row(spec)
        row.update(status="error", message=_message("start", exc))
    else:
        row = measure_point(spec)
    print(_RESULT + json.dumps(row), flush=True)
