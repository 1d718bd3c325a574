"""Profiling (scfmbench.profile): the memory probe sees a known allocation, out-of-memory and
time-outs become rows, the scaling fit, the GAT layer against a dense reference, every mechanism
on a tiny point, the config hooks, and a tiny workflow run that writes the profile report."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO

from scfmbench import InputError
from scfmbench.config import validate_config
from scfmbench.profile import (
    PointSpec,
    build_workload,
    check_mechanisms,
    measure_point,
    measure_region,
    mechanism_names,
    run_point,
    sweep,
)
from scfmbench.profile.analysis import fit_exponent, read_points, scaling_table, write_profile_report
from scfmbench.profile.gat import GATLayer, gat_dense_reference, khop_edges
from scfmbench.profile.measure import COLUMNS, write_rows
from scfmbench.profile.mechanisms import Shape, random_cell_graphs

MIB = 2**20
# Linux keeps a process's resident-set counters approximately (per-CPU batches since 6.2, per-thread
# 64-page batches before), so VmRSS / VmHWM can each be off by a fraction of a MiB: a known
# allocation must be seen to within this, never missed.
RSS_SLACK_MB = 1.0


def calibrate(length: int, dim: int, mode: str = "forward", **kw) -> PointSpec:
    """A point whose forward pass allocates exactly length * dim * 4 bytes (one float32 tensor)."""
    return PointSpec("calibrate", length, 1, mode, heads=1, dim=dim, device="cpu", warmup=1, repeats=2, threads=1, **kw)


# ---------------------------------------------------------------------------------------------
# the memory probe


@pytest.fixture(scope="module")
def capped_sweep():
    """One sweep of three fresh processes under a 512 MiB cap: 200 MiB, ~nothing, and 1 GiB."""
    return sweep([calibrate(MIB, 50), calibrate(1, 1), calibrate(MIB, 256)], timeout_s=120, max_mem_gb=0.5)


def test_cpu_peak_memory_sees_a_known_allocation_in_a_fresh_process(capped_sweep):
    """200 MiB allocated inside the measured region of a fresh process is reported (and not much
    more); a region allocating ~nothing reports ~nothing."""
    big, nothing, _ = capped_sweep
    assert big["status"] == "ok" and big["mem_method"] == "vmhwm", big
    assert 200 - RSS_SLACK_MB <= big["peak_mem_mb"] < 200 + 16, big["peak_mem_mb"]
    assert nothing["status"] == "ok" and nothing["peak_mem_mb"] < 2, nothing["peak_mem_mb"]
    assert big["time_median_s"] > 0 and big["n_repeats"] == 2
    assert big["tokens_per_s"] == pytest.approx(MIB / big["time_median_s"])


def test_measured_region_counts_what_the_step_holds_not_the_setup():
    """In this process: the setup's 100 MiB are baseline, the step's 200 MiB are the peak."""
    held = torch.ones(25 * MIB)  # 100 MiB allocated before the region: baseline, not counted

    def step():
        x = torch.ones(50 * MIB)  # 200 MiB, touched
        x.add_(1)

    result = measure_region(step, device="cpu", warmup=1, repeats=2)
    if result["mem_method"] != "vmhwm":
        pytest.skip("/proc/self/clear_refs is not writable here: ru_maxrss cannot be reset in-process")
    assert 200 - RSS_SLACK_MB <= result["peak_mem_mb"] < 200 + 16
    assert len(result["times"]) == 2
    idle = measure_region(lambda: None, device="cpu", warmup=0, repeats=3)
    assert idle["peak_mem_mb"] < 2
    del held


def test_max_repeat_time_stops_early_but_not_before_three():
    import time

    result = measure_region(lambda: time.sleep(0.02), device="cpu", warmup=0, repeats=50, max_repeat_time_s=0.01)
    assert len(result["times"]) == 3


# ---------------------------------------------------------------------------------------------
# failures are rows


def test_forced_oom_is_a_row_and_the_sweep_completes(capped_sweep):
    """Past the cap the allocation fails inside the point: an oom row, and the sweep goes on."""
    big, nothing, oom = capped_sweep
    assert oom["status"] == "oom" and math.isnan(oom["time_median_s"]) and math.isnan(oom["peak_mem_mb"]), oom
    assert "allocate" in oom["message"].lower()
    assert big["status"] == nothing["status"] == "ok"
    assert big["max_mem_gb"] == oom["max_mem_gb"] == 0.5


def test_timeout_is_a_row():
    row = run_point(calibrate(8, 8), timeout_s=0.05)
    assert row["status"] == "timeout" and "timeout_s=0.05" in row["message"] and row["timeout_s"] == 0.05


def test_setup_failure_is_an_error_row():
    row = measure_point(PointSpec("gat", 16, 1, "forward", heads=2, dim=4, hops=0, device="cpu", repeats=1))
    assert row["status"] == "error" and row["message"] == "setup: InputError: hops must be >= 1, got 0"


# ---------------------------------------------------------------------------------------------
# scaling exponents


def _rows(mechanism, lengths, time_fn, mem_fn, status=None):
    status = status or {}
    return [
        dict(
            mechanism=mechanism,
            **{"pass": "backward"},
            L=L,
            batch=1,
            status=status.get(L, "ok"),
            time_median_s=time_fn(L) if L not in status else math.nan,
            peak_mem_mb=mem_fn(L) if L not in status else math.nan,
        )
        for L in lengths
    ]


def test_scaling_exponents_on_synthetic_points():
    lengths = [512, 1024, 2048, 4096, 8192]
    df = pd.DataFrame(
        _rows("quadratic", lengths, lambda L: 3e-9 * L**2, lambda L: 5e-6 * L**2)
        + _rows("linear", lengths, lambda L: 2e-5 * L, lambda L: 0.01 * L, status={8192: "oom"})
        + _rows("nlogn", lengths, lambda L: 1e-6 * L * math.log2(L), lambda L: 0.5, status={})
    )
    table = scaling_table(df).set_index("mechanism")
    assert table.loc["quadratic", "time_exponent"] == pytest.approx(2.0, abs=1e-9)
    assert table.loc["quadratic", "memory_exponent"] == pytest.approx(2.0, abs=1e-9)
    assert table.loc["linear", "time_exponent"] == pytest.approx(1.0, abs=1e-9)
    assert (
        table.loc["linear", "time_points"] == 4 and table.loc["linear", "L_max"] == 4096
    )  # the oom point is not fitted
    assert table.loc["linear", "failed"] == "L=8192 oom"
    # L log2 L at L = 2^k, k = 9..13: slope = 1 + slope(ln k on k) / ln 2; by hand, with centred
    # k = -2..2: (-2 ln 9 - ln 10 + ln 12 + 2 ln 13) / 10 = 0.09177, so 1 + 0.09177 / 0.69315 = 1.1324
    assert table.loc["nlogn", "time_exponent"] == pytest.approx(1.1324, abs=1e-4)
    assert math.isnan(table.loc["nlogn", "memory_exponent"])  # 0.5 MB is below the probe's resolution
    assert math.isnan(fit_exponent([1024], [1.0]))


# ---------------------------------------------------------------------------------------------
# the GAT-style layer


def test_khop_edges_equal_boolean_matrix_powers():
    pattern = random_cell_graphs(24, 2, 2, 0, "cpu")  # no CLS shortcut would still be sparse at 1 hop
    A = pattern.to_dense().double()  # (B, L, L), A[b, i, j] = edge j -> i
    for hops in (1, 2, 3):
        reach = torch.zeros_like(A)
        power = torch.eye(24, dtype=torch.double).expand_as(A)
        for _ in range(hops):
            power = power @ A
            reach = reach + power
        src, dst = khop_edges(pattern, hops)
        got = torch.zeros(2, 24, 24, dtype=torch.bool)
        got[dst // 24, dst % 24, src % 24] = True
        assert torch.equal(got, reach > 0), hops
        assert bool(
            ((dst[1:] > dst[:-1]) | ((dst[1:] == dst[:-1]) & (src[1:] > src[:-1]))).all()
        )  # sorted by (dst, src), unique


def _khop_edges_sparse_product(pattern, hops):
    """The earlier implementation: R_k = R_{k-1} | A R_{k-1} as a sparse CSR x dense float product."""
    import warnings

    L, srcs, dsts = pattern.n_nodes, [], []
    for b in range(pattern.batch_size):
        keep = pattern.valid[b]
        s, d = pattern.src[b][keep], pattern.dst[b][keep]
        A = torch.sparse_coo_tensor(torch.stack([d, s]), torch.ones(s.numel()), (L, L), check_invariants=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            A = A.coalesce().to_sparse_csr()
        reach = A.to_dense() > 0
        for _ in range(hops - 1):
            reach = reach | (torch.sparse.mm(A, reach.float()) > 0)
        i, j = reach.nonzero(as_tuple=True)
        srcs.append(j + b * L)
        dsts.append(i + b * L)
    return torch.cat(srcs), torch.cat(dsts)


@pytest.mark.parametrize(
    ("L", "batch", "degree", "hops", "padded"),
    [(24, 2, 2, 3, False), (61, 3, 1, 4, True), (130, 1, 3, 6, False), (257, 2, 2, 2, True)],
)
def test_khop_edges_equal_the_sparse_product_form(L, batch, degree, hops, padded):
    """The bitset hops give exactly the edges (and order, dtype, layout) of the sparse x dense
    product, with and without the CLS shortcut, with padded slots and cells of unequal graphs."""
    from scfmbench.models.attention.edges import EdgePattern

    pattern = random_cell_graphs(L, batch, degree, L, "cpu")
    if padded:  # drop a random third of each cell's edges and the CLS token's: slots become invalid, reach stays sparse
        gen = torch.Generator().manual_seed(L)
        valid = (
            pattern.valid
            & (torch.rand(pattern.valid.shape, generator=gen) > 0.33)
            & (pattern.src != 0)
            & (pattern.dst != 0)
        )
        pattern = EdgePattern(pattern.src, pattern.dst, valid, L)
    src, dst = khop_edges(pattern, hops)
    ref_src, ref_dst = _khop_edges_sparse_product(pattern, hops)
    assert torch.equal(src, ref_src) and torch.equal(dst, ref_dst)
    assert src.dtype == dst.dtype == torch.int64 and src.is_contiguous() and dst.is_contiguous()
    if padded:
        assert src.numel() < batch * L * L  # not everything reaches everything: the test is not trivial


def test_reach_bits_do_not_depend_on_the_chunk_size():
    from scfmbench.profile.gat import _reach_bits

    pattern = random_cell_graphs(100, 1, 2, 3, "cpu")
    keep = pattern.valid[0]
    s, d = pattern.src[0][keep].numpy(), pattern.dst[0][keep].numpy()
    whole = _reach_bits(s, d, 100, 3)
    for chunk_bytes in (1, 13, 64, 1000):  # one destination per chunk up to several
        assert np.array_equal(_reach_bits(s, d, 100, 3, chunk_bytes=chunk_bytes), whole)
    assert np.unpackbits(whole, axis=1, count=100).shape == (100, 100)


def test_gat_layer_matches_dense_reference_values_and_gradients():
    gen = torch.Generator().manual_seed(0)
    B, H, L, D = 2, 3, 10, 4
    pattern = random_cell_graphs(L, B, 1, 1, "cpu")
    allowed = pattern.to_dense()
    allowed[0, 5] = False  # a node without incoming edges outputs 0
    b, i, j = allowed.nonzero(as_tuple=True)
    edges = (b * L + j, b * L + i)
    layer = GATLayer(H, D).double()
    q, k, v = (torch.randn(B, H, L, D, generator=gen, dtype=torch.double, requires_grad=True) for _ in range(3))
    out = layer(q, k, v, edges)
    ref = gat_dense_reference(layer, q, k, v, allowed)
    torch.testing.assert_close(out, ref)
    assert torch.all(out[0, :, 5] == 0)
    w = torch.randn(out.shape, generator=gen, dtype=torch.double)
    grads = torch.autograd.grad((out * w).sum(), [q, k, v, layer.att_src])
    grads_ref = torch.autograd.grad((ref * w).sum(), [q, k, v, layer.att_src])
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r)


def test_gat_receptive_field_covers_the_cell_through_the_cls_token():
    """Six hops over a cell graph with the CLS token: every token reaches every token."""
    shape = Shape(length=48, batch=2, heads=2, dim=4, degree=3, hops=6)
    src, dst = khop_edges(random_cell_graphs(48, 2, 3, 0, "cpu"), shape.hops)
    assert src.numel() == 2 * 48 * 48


# ---------------------------------------------------------------------------------------------
# every mechanism on a tiny point


@pytest.mark.parametrize("mode", ["forward", "backward"])
@pytest.mark.parametrize("name", [m for m in mechanism_names() if m != "hf-bigbird"])
def test_every_mechanism_measures_a_tiny_point(name, mode):
    spec = PointSpec(name, 64, 2, mode, heads=2, dim=8, degree=4, hops=2, device="cpu", warmup=1, repeats=2)
    row = measure_point(spec)
    assert row["status"] == "ok", row["message"]
    assert set(row) == set(COLUMNS)
    assert row["time_median_s"] > 0 and row["peak_mem_mb"] >= 0 and row["n_repeats"] == 2
    assert row["time_q25_s"] <= row["time_median_s"] <= row["time_q75_s"]
    assert row["tokens_per_s"] == pytest.approx(2 * 64 / row["time_median_s"])
    assert row["device"] == "cpu" and row["dtype"] == "float32" and row["torch_version"] == torch.__version__


def test_backward_pass_fills_and_then_clears_gradients():
    work = build_workload("full", Shape(length=16, batch=1, heads=2, dim=4), "cpu", torch.float32)
    work.forward().sum().backward()
    assert all(t.grad is not None for t in work.leaves[:3])
    work.clear_grads()
    assert all(t.grad is None for t in work.leaves[:3])


def _hf_outputs(narrow: bool, name: str, L: int):
    """Output, input gradient and parameter gradients of one Hugging Face module at (2, L, 16),
    built from transformers' own config classes when ``narrow`` is False."""
    from scfmbench.profile import hf

    torch.manual_seed(0)
    x = torch.randn(2, L, 16, requires_grad=True)
    if name == "longformer":
        (cls,) = hf.load(hf.LONGFORMER, "LongformerSelfAttention", narrow=narrow)
        if narrow:
            cfg = hf.longformer_config(16, 2, attention_window=64)
        else:
            from transformers import LongformerConfig

            cfg = LongformerConfig(
                hidden_size=16, num_attention_heads=2, attention_window=[64], attention_probs_dropout_prob=0.0
            )
        module = cls(cfg, layer_id=0)
        mask = torch.zeros(2, L)
        mask[:, 0] = 10000.0
        out = module(
            x, attention_mask=mask, is_index_masked=mask < 0, is_index_global_attn=mask > 0, is_global_attn=True
        )[0]
    else:
        cls, masks = hf.load(
            hf.BIGBIRD, "BigBirdBlockSparseAttention", "BigBirdModel.create_masks_for_block_sparse_attn", narrow=narrow
        )
        if narrow:
            cfg = hf.bigbird_config(16, 2, block_size=64, num_random_blocks=3, max_position_embeddings=4096)
        else:
            from transformers import BigBirdConfig

            cfg = BigBirdConfig(
                hidden_size=16,
                num_attention_heads=2,
                attention_type="block_sparse",
                block_size=64,
                num_random_blocks=3,
                max_position_embeddings=4096,
            )
        module = cls(cfg, seed=0)
        blocked, band, from_mask, to_mask = masks(torch.ones(2, L), 64)
        out = module(
            x, band_mask=band, from_mask=from_mask, to_mask=to_mask, from_blocked_mask=blocked, to_blocked_mask=blocked
        )[0]
    out.sum().backward()
    return [out.detach(), x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize(("name", "L"), [("longformer", 192), ("bigbird", 768), ("bigbird", 1024)])
def test_narrow_hugging_face_modules_equal_the_imported_ones(name, L):
    """Compiled from transformers' source without its model stack, the modules compute bit for bit
    what the imported ones do (BigBird at 1024 takes its 'paper plan' random-block path)."""
    narrow, imported = _hf_outputs(True, name, L), _hf_outputs(False, name, L)
    assert len(narrow) == len(imported) > 2
    for a, b in zip(narrow, imported):
        assert torch.equal(a, b)


def test_narrow_load_falls_back_when_a_definition_reads_other_globals():
    from scfmbench.profile import hf

    assert hf._narrow(hf.LONGFORMER, ("LongformerModel",)) is None  # reads logger, PreTrainedModel, ...
    assert hf._narrow(hf.LONGFORMER, ("NoSuchClass",)) is None
    assert hf._narrow("transformers.models.no_such_model.modeling_no_such_model", ("X",)) is None
    (cls,) = hf.load(hf.LONGFORMER, "LongformerModel")  # the ordinary import
    assert cls.__name__ == "LongformerModel" and "transformers.modeling_utils" in sys.modules


def test_profile_job_process_stays_light_and_hugging_face_points_skip_the_model_stack(tmp_path):
    """The job process (``profile_point``) imports neither torch nor pandas; the measured process
    builds hf-longformer and hf-bigbird without ``transformers.modeling_utils``; the bigbird length
    check fails before any import; the CSV reads back as the row."""
    code = f"""
import json, sys
from scfmbench.profile.measure import PointSpec, measure_point, profile_point
settings = dict(heads=1, dim=8, device="cpu", warmup=1, repeats=2, timeout_s=120, max_mem_gb=2)
row = profile_point(mechanism="calibrate", length=2**21, batch=1, mode="forward", settings=settings, \
output={str(tmp_path / "p.csv")!r}, threads=1)
light = sorted(m for m in ("torch", "pandas", "transformers") if m in sys.modules)
small = measure_point(PointSpec("hf-bigbird", 512, 1, "forward", heads=2, dim=8, device="cpu", repeats=1))
after_error = sorted(m for m in sys.modules if m.startswith("transformers"))
rows = [measure_point(PointSpec(m, L, 1, "backward", heads=2, dim=8, device="cpu", repeats=1)) \
for m, L in (("hf-longformer", 128), ("hf-bigbird", 768))]
print(json.dumps(dict(row=row, light=light, small=small, after_error=after_error, rows=rows, \
stack="transformers.modeling_utils" in sys.modules)))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["light"] == [], got["light"]
    assert got["row"]["status"] == "ok" and 64 - RSS_SLACK_MB <= got["row"]["peak_mem_mb"] < 64 + 16, got[
        "row"
    ]  # 2^21 x 8 float32
    table = read_points([tmp_path / "p.csv"])
    assert (
        len(table) == 1
        and table.loc[0, "status"] == "ok"
        and table.loc[0, "time_median_s"] == pytest.approx(got["row"]["time_median_s"], rel=1e-12)
    )
    assert (
        table.loc[0, "max_mem_gb"] == 2
        and table.loc[0, "n_repeats"] == 2
        and table.loc[0, "torch_version"] == torch.__version__
    )
    assert (
        got["small"]["status"] == "error" and "needs L >= 704" in got["small"]["message"] and got["after_error"] == []
    )
    assert [r["status"] for r in got["rows"]] == ["ok", "ok"], [r["message"] for r in got["rows"]]
    assert got["stack"] is False


def test_write_row_is_the_file_write_rows_writes(tmp_path):
    from scfmbench.profile.measure import base_row, write_row

    row = base_row(PointSpec("full", 512, 1, "forward"))
    row.update(
        status="ok",
        time_median_s=0.0036919039998792,
        time_q25_s=1e-05,
        time_q75_s=200.0,
        peak_mem_mb=5.69140625,
        n_repeats=10,
        device_name="AMD EPYC, 7B13",
        message='setup: x, "quoted"\ttab',
    )
    write_row(row, tmp_path / "a" / "one.csv")
    write_rows([row], tmp_path / "two.csv")
    assert (tmp_path / "a" / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    back = read_points([tmp_path / "a" / "one.csv"]).iloc[0]
    assert back["message"] == row["message"] and back["time_q25_s"] == 1e-05 and math.isnan(back["tokens_per_s"])
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["one.csv"]  # no temporary left behind


# ---------------------------------------------------------------------------------------------
# config hooks


PAPER = {
    "mechanisms": ["full", "genohoption-p", "genohoption-h", "gat", "performer"],
    "heads": 8,
    "dim": 256,
    "batches": [32],
    "dtype": "float16",
    "device": "cuda",
    "lengths": [100, 500, 1000, 1500, 2000, 2500, 3000, 8192, 16384, 20000, 32768],
    "max_mem_gb": None,
}


def test_paper_settings_are_expressible(schema_path):
    cfg = validate_config({"datasets": {"pbmc68k": {"source": "pbmc68k"}}, "profile": dict(PAPER)}, schema_path)
    assert cfg["profile"]["repeats"] == 10 and cfg["profile"]["passes"] == ["forward", "backward"]
    spec = PointSpec.from_settings(
        "gat",
        3000,
        32,
        "forward",
        {k: v for k, v in cfg["profile"].items() if k not in ("mechanisms", "lengths", "batches", "passes")},
    )
    assert (spec.heads, spec.dim, spec.dtype, spec.device, spec.batch, spec.hops) == (8, 256, "float16", "cuda", 32, 6)


def test_profile_defaults_profile_nothing_and_typos_are_errors(schema_path):
    cfg = validate_config({"datasets": {"pbmc68k": {"source": "pbmc68k"}}}, schema_path)
    assert cfg["profile"]["mechanisms"] == [] and cfg["profile"]["lengths"] == [512, 1024, 2048, 4096, 8192]
    with pytest.raises(InputError, match="repeat"):
        validate_config({"datasets": {"pbmc68k": {"source": "pbmc68k"}}, "profile": {"repeat": 3}}, schema_path)
    with pytest.raises(InputError, match="unknown mechanism.*'flash'"):
        check_mechanisms(["full", "flash"])
    with pytest.raises(InputError, match="pass must be one of"):
        PointSpec("full", 64, 1, "sideways")


@pytest.mark.parametrize("name", ["config.yaml", "cpu.yaml"])
def test_cpu_configs_profile_the_papers_kernels_up_to_the_long_sequence_regime(name):
    """The default profiles the attention kernels of the papers' grid; config/cpu.yaml every
    registered mechanism the issue names (scHyena's operator, GAT, the reference implementations)."""
    from scfmbench.models.attention import KERNELS

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["profile"].update(yaml.safe_load((REPO / "config" / name).read_text()).get("profile", {}))
    grid = {"full", "genohoption-p", "genohoption-h", "longformer", "bigbird", "diffuser", "performer"}
    wanted = (
        grid
        if name == "config.yaml"
        else (set(KERNELS) - {"genohoption"}) | {"schyena", "gat", "hf-longformer", "hf-bigbird", "performer-pytorch"}
    )
    assert wanted <= set(cfg["profile"]["mechanisms"])
    lengths = cfg["profile"]["lengths"]  # a scaling curve up to the long-sequence regime: lengths over a factor >= 16
    assert len(lengths) >= 2 and max(lengths) >= 8192 and max(lengths) / min(lengths) >= 16


# ---------------------------------------------------------------------------------------------
# report and workflow


def test_report_files_from_point_csvs(tmp_path):
    rows = []
    for mech, scale in (("full", 1e-9), ("onehop", 1e-6)):
        for mode in ("forward", "backward"):
            for L in (256, 512, 1024):
                rows.append(
                    {c: math.nan for c in COLUMNS}
                    | dict(
                        mechanism=mech,
                        **{"pass": mode},
                        L=L,
                        batch=1,
                        heads=4,
                        dim=32,
                        dtype="float32",
                        device="cpu",
                        device_name="x",
                        torch_version="2",
                        cuda_version="",
                        message="",
                        status="ok",
                        time_median_s=scale * L ** (2 if mech == "full" else 1),
                        peak_mem_mb=0.01 * L,
                    )
                )
    rows[-1].update(status="oom", time_median_s=math.nan, peak_mem_mb=math.nan, message="setup: out of memory")
    paths = []
    for n, row in enumerate(rows):
        paths.append(tmp_path / f"p{n}.csv")
        write_rows([row], paths[-1])
    out = {
        k: tmp_path / "report" / v
        for k, v in dict(
            csv="profile.csv", scaling_csv="s.csv", scaling_md="s.md", time_png="t.png", memory_png="m.png"
        ).items()
    }
    scaling = write_profile_report(reversed(paths), **out)
    table = read_points([out["csv"]])
    assert list(table.columns) == list(COLUMNS) and len(table) == 12
    assert list(table["pass"][:3]) == ["forward"] * 3 and list(table["L"][:3]) == [256, 512, 1024]
    s = scaling.set_index(["mechanism", "pass"])
    assert s.loc[("full", "backward"), "time_exponent"] == pytest.approx(2.0)
    assert s.loc[("onehop", "backward"), "failed"] == "L=1024 oom"
    md = out["scaling_md"].read_text()
    assert "| full | forward | 1 | 2 |" in md and "oom" in md
    for key in ("time_png", "memory_png"):
        assert out[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_tiny_profile_workflow_writes_the_report(tmp_path):
    for item in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    tiny = {
        "profile": {
            "mechanisms": ["full", "gat"],
            "lengths": [32, 64],
            "passes": ["backward"],
            "heads": 2,
            "dim": 8,
            "degree": 4,
            "hops": 2,
            "repeats": 2,
            "timeout_s": 120,
            "max_mem_gb": 2,
        }
    }
    (tmp_path / "config" / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "profile_report", "--configfile", "config/tiny.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = tmp_path / "results" / "report"
    points = pd.read_csv(report / "profile.csv")
    assert len(points) == 2 * 2 and set(points["status"]) == {"ok"}, points[
        ["mechanism", "pass", "L", "status", "message"]
    ]
    assert (points["n_repeats"] == 2).all() and (points["threads"] == 1).all()
    assert (tmp_path / "results" / "profile" / "gat" / "L64_B1_backward.csv").exists()
    scaling = pd.read_csv(report / "profile_scaling.csv")
    assert len(scaling) == 2 and np.isfinite(scaling["time_exponent"]).all()
    for name in ("profile_scaling.md", "figures/profile_time.png", "figures/profile_memory.png"):
        assert (report / name).stat().st_size > 0
