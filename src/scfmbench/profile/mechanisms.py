"""What can be profiled: a registry of mechanisms, each a builder of one workload.

A mechanism builds, from a :class:`Shape`, a :class:`Workload`: a ``forward()`` closure over
inputs and modules that are already on the device, and the tensors whose gradients a backward
pass fills. Everything a builder does is setup (inputs, modules, edge patterns); only
``forward()`` (and, for the backward pass, its backward) is measured (``measure.py``).

Registered mechanisms (input shapes: q, k, v (B, H, L, D); x (B, L, H * D)):

=====================  ======================================================================
<every attention kernel>  ``scfmbench.models.attention.KERNELS`` on q, k, v (``full``,
                       ``genohoption``, ``genohoption-p/-h``, ``onehop``, ``longformer``,
                       ``bigbird``, ``diffuser``, ``performer``); graph kernels on the cell
                       graphs of :func:`random_cell_graphs`
gat                    :class:`~scfmbench.profile.gat.GATLayer` over the ``hops``-hop edges of
                       the same cell graphs, materialised (GenoHoption's receptive field)
schyena                one scHyena block (``HyenaBlock``: bidirectional Hyena order 2, MLP) on x
full-block             the same block with full attention as the mixer (``bench.hyena``'s pair)
hf-longformer          Hugging Face ``LongformerSelfAttention`` (window 64, global token 0) on x
hf-bigbird             Hugging Face ``BigBirdBlockSparseAttention`` (block 64, 3 random blocks) on
                       x; needs L >= 704 and a multiple of 64, otherwise the row reads ``error``
                       (both compiled from transformers' installed source without its model
                       stack, :mod:`scfmbench.profile.hf`: same code, ~3 s less import per point)
performer-pytorch      ``performer_pytorch.FastAttention`` on q, k, v
calibrate              allocates one (B, H, L, D) tensor of ones: a known amount of memory, to
                       check the memory probe (not a model)
=====================  ======================================================================

The Hugging Face modules include their q/k/v projections (they cannot be called without them);
the kernels, ``gat`` and ``FastAttention`` take q, k, v directly; the blocks include norms and
the MLP. Builders import optional packages lazily, so a missing one fails only its own points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

KNOWN_IMPLEMENTATIONS = ("hf-longformer", "hf-bigbird", "performer-pytorch")


@dataclass(frozen=True)
class Shape:
    """One profiling point's input: batch B, heads H, head dim D, length L, and the graph setting."""

    length: int
    batch: int = 1
    heads: int = 4
    dim: int = 32
    degree: int = 30  # mean in-degree of the cell graphs (graph kernels and gat)
    hops: int = 6  # gat: receptive field in hops (GenoHoption's K)
    seed: int = 0

    @property
    def d_model(self) -> int:
        return self.heads * self.dim


@dataclass
class Workload:
    """``forward()`` returns a tensor; ``leaves`` are the inputs and modules whose grads a backward
    pass fills (cleared after every pass, so gradients do not accumulate across repeats)."""

    forward: Callable
    leaves: list = field(default_factory=list)

    def clear_grads(self) -> None:
        for leaf in self.leaves:
            if hasattr(leaf, "zero_grad"):
                leaf.zero_grad(set_to_none=True)
            else:
                leaf.grad = None


_BUILDERS: dict[str, Callable] = {}


def register_mechanism(name: str) -> Callable:
    """Decorator: ``builder(shape, device, dtype) -> Workload`` becomes profilable as ``name``."""

    def deco(builder):
        if name in _BUILDERS:
            raise ValueError(f"mechanism {name!r} registered twice")
        _BUILDERS[name] = builder
        return builder

    return deco


def mechanism_names() -> list[str]:
    """Every attention kernel, then the extra mechanisms, in registry order."""
    from scfmbench.models.attention import KERNELS

    return list(KERNELS) + [m for m in _BUILDERS if m not in KERNELS]


def check_mechanisms(names, *, where: str = "profile.mechanisms") -> None:
    from scfmbench import InputError

    known = mechanism_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"config key {where!r}: unknown mechanism(s) {unknown}; registered are {known}")


def build_workload(name: str, shape: Shape, device, dtype) -> Workload:
    """Build ``name``'s workload for ``shape`` on ``device`` in ``dtype`` (seeded by ``shape.seed``)."""
    import torch

    from scfmbench.models.attention import KERNELS

    check_mechanisms([name], where="mechanism")
    torch.manual_seed(shape.seed)
    device = torch.device(device)
    if name in KERNELS:
        return _kernel(shape, device, dtype, name=name)
    return _BUILDERS[name](shape, device, dtype)


# ---------------------------------------------------------------------------------------------
# inputs


def random_cell_graphs(L: int, batch: int, degree: int, seed: int, device):
    """Per-cell induced subgraphs of one random gene graph, mean in-degree ~ ``degree``.

    2L genes with in-degree 2 * degree; each cell carries a random half of them, so a cell's
    induced subgraph has mean in-degree ~ degree, plus self-loops and the CLS token 0 joined to
    every gene (``graph_pattern(..., n_global=1)``), as GenoHoption's Seq2Graph graphs.
    """
    import numpy as np
    import scipy.sparse as sp
    import torch

    from scfmbench.models.attention import graph_pattern

    rng = np.random.default_rng(seed)
    G = 2 * L
    n_edges = G * 2 * degree
    src, dst = rng.integers(0, G, n_edges), rng.integers(0, G, n_edges)
    adjacency = sp.csr_matrix((np.ones(n_edges, dtype=np.float32), (src, dst)), shape=(G, G))
    genes = np.stack([rng.permutation(G)[:L] for _ in range(batch)])
    return graph_pattern(adjacency, torch.as_tensor(genes, device=device), n_global=1)


def _qkv(shape: Shape, device, dtype):
    import torch

    return [
        torch.randn(shape.batch, shape.heads, shape.length, shape.dim, device=device, dtype=dtype, requires_grad=True)
        for _ in range(3)
    ]


def _tokens(shape: Shape, device, dtype):
    import torch

    return torch.randn(shape.batch, shape.length, shape.d_model, device=device, dtype=dtype, requires_grad=True)


# ---------------------------------------------------------------------------------------------
# builders


def _kernel(shape: Shape, device, dtype, *, name: str) -> Workload:
    """A registered attention kernel on q, k, v. Graph kernels get :func:`random_cell_graphs`;
    fixed-pattern kernels (window, BigBird, Diffuser) build their pattern here, outside the
    measurement. The pattern's compiled CSR cache is cleared before every call, so compiling it
    (per forward in a model) is measured, building it (data preparation) is not."""
    from scfmbench.models.attention import build_kernel

    module = build_kernel(name).to(device=device, dtype=dtype)
    qkv = _qkv(shape, device, dtype)
    edges = (
        random_cell_graphs(shape.length, shape.batch, shape.degree, shape.seed, device) if module.needs_edges else None
    )
    if edges is None and hasattr(module, "pattern"):
        edges = module.pattern(shape.length, None, device)

    def forward():
        if edges is not None:
            edges.clear_cache()
        return module(*qkv, key_padding_mask=None, edges=edges)

    return Workload(forward, [*qkv, module])


@register_mechanism("gat")
def _gat(shape: Shape, device, dtype) -> Workload:
    from scfmbench.profile.gat import GATLayer, khop_edges

    edges = khop_edges(random_cell_graphs(shape.length, shape.batch, shape.degree, shape.seed, device), shape.hops)
    layer = GATLayer(shape.heads, shape.dim).to(device=device, dtype=dtype)
    qkv = _qkv(shape, device, dtype)
    return Workload(lambda: layer(*qkv, edges), [*qkv, layer])


def _block(shape: Shape, device, dtype, *, mixer: str) -> Workload:
    from scfmbench.models.attention import MultiHeadAttention
    from scfmbench.models.hyena import HyenaBlock

    if mixer == "hyena":
        block = HyenaBlock(shape.d_model, l_max=shape.length)
    else:
        block = HyenaBlock(shape.d_model, mixer=MultiHeadAttention(shape.d_model, shape.heads, kernel="full"))
    block = block.to(device=device, dtype=dtype)
    x = _tokens(shape, device, dtype)
    return Workload(lambda: block(x), [x, block])


@register_mechanism("schyena")
def _schyena(shape: Shape, device, dtype) -> Workload:
    return _block(shape, device, dtype, mixer="hyena")


@register_mechanism("full-block")
def _full_block(shape: Shape, device, dtype) -> Workload:
    return _block(shape, device, dtype, mixer="full")


@register_mechanism("hf-longformer")
def _hf_longformer(shape: Shape, device, dtype) -> Workload:
    import torch

    from scfmbench.profile import hf

    (LongformerSelfAttention,) = hf.load(hf.LONGFORMER, "LongformerSelfAttention")
    cfg = hf.longformer_config(shape.d_model, shape.heads, attention_window=64)
    module = LongformerSelfAttention(cfg, layer_id=0).to(device=device, dtype=dtype)
    x = _tokens(shape, device, dtype)
    mask = torch.zeros(shape.batch, shape.length, device=device, dtype=dtype)
    mask[:, 0] = 10000.0  # global attention on token 0, as the window kernels' CLS
    is_masked, is_global = mask < 0, mask > 0

    def forward():
        return module(
            x, attention_mask=mask, is_index_masked=is_masked, is_index_global_attn=is_global, is_global_attn=True
        )[0]

    return Workload(forward, [x, module])


BIGBIRD_BLOCK, BIGBIRD_RANDOM_BLOCKS = 64, 3


@register_mechanism("hf-bigbird")
def _hf_bigbird(shape: Shape, device, dtype) -> Workload:
    import torch

    from scfmbench import InputError
    from scfmbench.profile import hf

    L = shape.length
    need = (5 + 2 * BIGBIRD_RANDOM_BLOCKS) * BIGBIRD_BLOCK
    if L < need or L % BIGBIRD_BLOCK:  # before anything is built or imported
        raise InputError(f"BigBird block-sparse needs L >= {need} and a multiple of {BIGBIRD_BLOCK}, got L={L}")
    BigBirdBlockSparseAttention, create_masks = hf.load(
        hf.BIGBIRD, "BigBirdBlockSparseAttention", "BigBirdModel.create_masks_for_block_sparse_attn"
    )
    cfg = hf.bigbird_config(
        shape.d_model,
        shape.heads,
        block_size=BIGBIRD_BLOCK,
        num_random_blocks=BIGBIRD_RANDOM_BLOCKS,
        max_position_embeddings=max(L, 4096),
    )
    module = BigBirdBlockSparseAttention(cfg, seed=shape.seed).to(device=device, dtype=dtype)
    x = _tokens(shape, device, dtype)
    blocked, band, from_mask, to_mask = create_masks(
        torch.ones(shape.batch, L, device=device, dtype=dtype), BIGBIRD_BLOCK
    )

    def forward():
        return module(
            x, band_mask=band, from_mask=from_mask, to_mask=to_mask, from_blocked_mask=blocked, to_blocked_mask=blocked
        )[0]

    return Workload(forward, [x, module])


@register_mechanism("performer-pytorch")
def _performer_pytorch(shape: Shape, device, dtype) -> Workload:
    import warnings

    with warnings.catch_warnings():  # performer-pytorch 1.1.4 imports distutils' LooseVersion
        warnings.simplefilter("ignore", DeprecationWarning)
        from performer_pytorch import FastAttention

    module = FastAttention(dim_heads=shape.dim).to(device=device, dtype=dtype)
    qkv = _qkv(shape, device, dtype)
    return Workload(lambda: module(*qkv), [*qkv, module])


@register_mechanism("calibrate")
def _calibrate(shape: Shape, device, dtype) -> Workload:
    """Forward: exactly one new (B, H, L, D) tensor of ones (B * H * L * D * itemsize bytes).
    Backward: that tensor times a scalar leaf, so the backward pass has a graph to walk."""
    import torch

    scale = torch.ones((), device=device, dtype=dtype, requires_grad=True)
    size = (shape.batch, shape.heads, shape.length, shape.dim)

    def forward():
        ones = torch.ones(size, device=device, dtype=dtype)
        return ones * scale if torch.is_grad_enabled() else ones

    return Workload(forward, [scale])
