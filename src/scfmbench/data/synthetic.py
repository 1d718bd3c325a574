"""The ``synthetic`` dataset: cells simulated from a real gene regulatory network (TRRUST v2).

Why simulate at all: the benchmark needs one dataset whose ground truth is known exactly, both for
imputation (the noise-free expression behind every observed zero) and for graph priors (the
regulatory edges that actually drove the expression). Using a *real* network (TRRUST v2, vendored
in ``data/grn/``, see ``data/grn/SOURCE.md``) keeps the graph's shape realistic (hub TFs,
co-regulated targets) and its gene symbols real, so prior-knowledge graphs built from regulatory
databases hit it the way they would hit real data.

The generative model, in the order :func:`simulate_grn_dataset` runs it:

1. **Genes.** A connected subnetwork of exactly ``n_genes`` genes, grown from a hub TF by a seeded
   random walk over the frontier that prefers genes linked to many already-chosen genes (so the
   subnetwork is dense, not a star around one hub).
2. **Cell types.** Each type switches on its own small set of TFs (its *program*); programs may
   overlap, which is what makes some types harder to tell apart.
3. **Regulation.** A gene's activity ``s`` in (-1, 1) is ``tanh(bias + external input + sum of
   signed regulator activities)``, iterated a few damped steps down the network's edges
   (Activation = positive weight, Repression = negative; pairs whose mode is Unknown or tied get a
   seeded sign). External input = program (type-level) + per-cell noise on TFs (biological
   variation within a type).
4. **Expression.** ``log mu = log baseline + log_fold_range / 2 * s``; baselines are log-normal
   across genes, as gene abundances are in real data.
5. **Measurement.** Per-cell library size (log-normal) -> negative-binomial counts (gamma-Poisson)
   -> technical dropout whose probability falls with the expected count.

The noise-free truth (``layers["truth"]``) is step 4, normalized like ``X``. The Poisson rate of
step 5 (``layers["rate"]``: the gamma draw, 0 where dropout hit) is what each cell's molecules were
sampled from: what molecular cross-validation's two halves share, and so what it estimates.
"""

from __future__ import annotations

import math
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from scfmbench import InputError
from scfmbench.data.contract import TARGET_SUM, log_normalize

GRN_DIR = Path(__file__).parent / "grn"
VENDORED_GRNS = {
    "trrust_human": "trrust_rawdata.human.tsv",
    "trrust_mouse": "trrust_rawdata.mouse.tsv",
}
# How many of the highest out-degree TFs the subnetwork may start from (one is picked per seed):
# enough that seeds give different networks, few enough that every start is a well-connected hub.
_N_START_HUBS = 10


def vendored_grn_path(name: str) -> Path:
    """Path of a vendored regulatory network file (``"trrust_human"`` or ``"trrust_mouse"``)."""
    if name not in VENDORED_GRNS:
        raise InputError(f"unknown network {name!r}; vendored networks are {sorted(VENDORED_GRNS)}.")
    return GRN_DIR / VENDORED_GRNS[name]


def read_trrust(path: str | Path) -> pd.DataFrame:
    """Read a TRRUST raw table (no header) as columns ``tf``, ``target``, ``mode``, ``pmid``."""
    return pd.read_csv(
        path, sep="\t", header=None, names=["tf", "target", "mode", "pmid"], dtype=str, keep_default_na=False
    )


def _signed_edges(table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One row per TF -> target pair with a sign of +1 or -1.

    TRRUST lists a pair once per (mode, evidence) so one pair can be both Activation and
    Repression; the majority of its signed rows decides. Pairs with only Unknown rows, or a tie,
    get a seeded sign, positive with the probability that a signed TRRUST pair is an Activation
    (about 0.6 in human), so the simulated network keeps the database's activation/repression mix.
    Self-loops are dropped: a TF that activates itself saturates the bounded activity and adds
    nothing a graph prior could use.
    """
    table = table[table["tf"] != table["target"]]
    vote = table["mode"].map({"Activation": 1, "Repression": -1}).fillna(0).astype(int)
    edges = vote.groupby([table["tf"], table["target"]], sort=True).sum().rename("vote").reset_index()
    signed = edges["vote"] != 0
    p_act = float((edges.loc[signed, "vote"] > 0).mean()) if signed.any() else 0.5
    drawn = np.where(rng.random(len(edges)) < p_act, 1, -1)
    edges["sign"] = np.where(signed, np.sign(edges["vote"]), drawn).astype(int)
    return edges[["tf", "target", "sign"]]


def _grow_subnetwork(edges: pd.DataFrame, n_genes: int, rng: np.random.Generator) -> list[str]:
    """Choose a connected set of exactly ``n_genes`` genes from the network, seeded.

    Start at one of the top out-degree TFs, then add one frontier gene at a time with probability
    proportional to its number of links into the chosen set. Plain BFS from a hub would
    return that hub's targets only (SP1 alone has over 500), a star with no co-regulation;
    favouring well-linked genes gives the dense, multi-TF neighbourhoods graph priors feed on.
    The set is connected by construction: every added gene links to one already chosen.
    """
    genes = pd.Index(sorted(set(edges["tf"]) | set(edges["target"])))
    i, j = genes.get_indexer(edges["tf"]), genes.get_indexer(edges["target"])
    adj = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(len(genes), len(genes))).tocsr()
    adj = ((adj + adj.T) > 0).astype(np.int64).tocsr()  # undirected: connectivity ignores direction

    _, comp = connected_components(adj, directed=False)
    sizes = np.bincount(comp)
    if n_genes > sizes.max():
        raise InputError(
            f"n_genes={n_genes} exceeds the largest connected component of the network ({sizes.max()} genes); "
            f"use n_genes <= {sizes.max()}."
        )

    in_largest = set(genes[comp == np.argmax(sizes)])
    # Ties broken by name so the hub list does not depend on pandas' sort stability.
    out_degree = edges["tf"].value_counts().rename_axis("tf").reset_index()
    out_degree = out_degree.sort_values(["count", "tf"], ascending=[False, True])
    hubs = [g for g in out_degree["tf"] if g in in_largest][:_N_START_HUBS]
    start = genes.get_loc(hubs[rng.integers(len(hubs))])

    chosen = np.zeros(len(genes), dtype=bool)
    links = np.zeros(len(genes), dtype=np.int64)  # links from each gene into the chosen set
    order = [start]
    chosen[start] = True
    links += adj[start].toarray().ravel()
    while len(order) < n_genes:
        frontier = np.flatnonzero((links > 0) & ~chosen)
        w = links[frontier] / links[frontier].sum()
        nxt = frontier[rng.choice(len(frontier), p=w)]
        order.append(nxt)
        chosen[nxt] = True
        links += adj[nxt].toarray().ravel()
    return genes[order].tolist()


def _choose_programs(n_tfs: int, n_cell_types: int, tfs_per_type: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Distinct random TF subsets, one per cell type (indices into the TF list)."""
    k = min(tfs_per_type, n_tfs)
    if math.comb(n_tfs, k) < n_cell_types:
        raise InputError(
            f"the chosen subnetwork has {n_tfs} TF(s), too few for {n_cell_types} distinct programs of {k} TF(s); "
            "increase n_genes or decrease n_cell_types."
        )
    programs: list[np.ndarray] = []
    seen: set[tuple[int, ...]] = set()
    while len(programs) < n_cell_types:
        p = np.sort(rng.choice(n_tfs, size=k, replace=False))
        if tuple(p) not in seen:
            seen.add(tuple(p))
            programs.append(p)
    return programs


def _network(network: str, n_genes: int, regulation_strength: float, rng: np.random.Generator):
    """Steps 1 of both simulations: the subnetwork's genes (sorted), its signed edges, each edge's
    regulator index and the weight matrix ``W[regulator, target]`` (``U(0.5, 1.5) *
    regulation_strength / sqrt(in-degree)`` per edge)."""
    edges = _signed_edges(read_trrust(vendored_grn_path(network)), rng)
    genes = pd.Index(sorted(_grow_subnetwork(edges, n_genes, rng)))
    edges = edges[edges["tf"].isin(genes) & edges["target"].isin(genes)].reset_index(drop=True)
    src, dst = genes.get_indexer(edges["tf"]), genes.get_indexer(edges["target"])
    in_degree = np.bincount(dst, minlength=n_genes)
    weight = (
        edges["sign"].to_numpy() * rng.uniform(0.5, 1.5, len(edges)) * regulation_strength / np.sqrt(in_degree[dst])
    )
    return genes, edges, src, sp.csr_matrix((weight, (src, dst)), shape=(n_genes, n_genes))


def _measure(
    rel: np.ndarray,
    rng: np.random.Generator,
    *,
    mean_library_size: float,
    library_size_sd: float,
    dispersion: float,
    dropout: float,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """The measurement step of both simulations: per-cell library size (log-normal), negative
    binomial counts (gamma-Poisson), dropout falling with the expected count.

    Returns the counts (float32 CSR) and the Poisson rate they were drawn from (float32, dense): the
    gamma draw, 0 where dropout zeroed the entry. Zeroing a Poisson(rate) draw is a Poisson(0) draw,
    so ``counts ~ Poisson(rate)`` exactly, and binomial thinning (molecular cross-validation) gives
    two independent Poisson parts of this one rate: it is what MCV estimates, not the truth.
    """
    lib = mean_library_size * np.exp(rng.normal(-0.5 * library_size_sd**2, library_size_sd, len(rel)))
    mu = rel * lib[:, None]
    lam = rng.gamma(1.0 / dispersion, mu * dispersion) if dispersion > 0 else mu
    counts = rng.poisson(lam)
    if dropout > 0:
        dropped = rng.random(counts.shape) < dropout / (dropout + mu)
        counts[dropped] = 0
        lam = np.where(dropped, 0.0, lam)
    return sp.csr_matrix(counts.astype(np.float32)), lam.astype(np.float32)


def simulate_grn_dataset(
    *,
    n_cells: int = 1500,
    n_genes: int = 300,
    n_cell_types: int = 6,
    seed: int = 0,
    network: str = "trrust_human",
    tfs_per_type: int = 3,
    program_strength: float = 3.0,
    cell_noise: float = 0.8,
    regulation_strength: float = 1.5,
    n_steps: int = 5,
    log_fold_range: float = 3.0,
    baseline_sd: float = 1.2,
    mean_library_size: float = 2000.0,
    library_size_sd: float = 0.4,
    dispersion: float = 0.2,
    dropout: float = 1.0,
) -> ad.AnnData:
    """Simulate single-cell counts driven by a connected subnetwork of a real TF -> target network.

    Parameters
    ----------
    n_cells
        Number of cells (default 1500: enough for a train/valid/test split with every type in each,
        small enough to simulate in about a second).
    n_genes
        Number of genes, all from the network and connected through it (default 300: the size of a
        small HVG panel; longer sequences belong to the profiling benchmark, not here).
    n_cell_types
        Number of cell types, each with its own TF program (default 6, a typical annotation task).
    seed
        Seed of every random choice: subnetwork, signs of Unknown edges, programs, cells, noise
        (default 0). Same seed, same counts.
    network
        Vendored network: ``"trrust_human"`` (default; the benchmark's other data are human) or
        ``"trrust_mouse"``.
    tfs_per_type
        TFs a cell type switches on (default 3: programs of a few master regulators, small enough
        that types share some TFs and are not trivially separable).
    program_strength
        Input added to a program TF's activity, in units of the tanh argument (default 3.0:
        switches a TF clearly on against its negative bias and the noise; with the other defaults
        a logistic regression separates the types at about 0.9 accuracy, not 1.0).
    cell_noise
        Standard deviation of per-cell, per-TF input noise (default 0.8: within-type biological
        variation comparable to a weak program, so types overlap at their edges).
    regulation_strength
        Total weight of a gene's regulators: each edge weighs ``U(0.5, 1.5) * regulation_strength
        / sqrt(in-degree)`` (default 1.5: a single activated regulator moves its target
        substantially; dividing by sqrt(in-degree) keeps hub targets from saturating).
    n_steps
        Damped propagation steps down the network (default 5: information reaches targets several
        edges away from the program TFs; TRRUST subnetworks rarely have longer chains that matter).
    log_fold_range
        Natural-log range of a gene's mean between activity -1 and +1 (default 3.0, i.e. up to a
        20-fold change, typical of marker genes).
    baseline_sd
        Standard deviation of log baseline means across genes (default 1.2: gene abundances span
        about two orders of magnitude, as in a real HVG panel).
    mean_library_size
        Mean total counts per cell (default 2000.0: a shallow 10x-like depth on a 300-gene panel).
    library_size_sd
        Standard deviation of log library size across cells (default 0.4, typical of droplet data).
    dispersion
        Negative-binomial overdispersion ``phi``, variance ``mu + phi * mu^2`` (default 0.2: the
        range fitted to UMI data; 0 gives Poisson).
    dropout
        Expected count at which half of the values are zeroed by technical dropout; the dropout
        probability is ``dropout / (dropout + expected count)`` (default 1.0: hits mostly
        low-expression genes and brings the default data to about 50% zeros, beyond what the
        negative binomial alone gives; 0 disables it).

    Returns
    -------
    AnnData with ``n_cells`` x ``n_genes``:

    ``X``
        ``log1p(normalize_total(counts, 1e4))``, float32 CSR (:func:`~scfmbench.data.contract.log_normalize`).
    ``layers["counts"]``
        Integer counts, float32 CSR.
    ``layers["truth"]``
        Noise-free expression on the scale of ``X``: the expected counts before library-size,
        sampling and dropout noise, normalized to 1e4 per cell and log1p'd; float32 ndarray.
    ``layers["rate"]``
        The Poisson rate behind the counts, in counts (per-cell library size and gamma draw
        included, 0 where dropout hit): ``counts ~ Poisson(rate)``; float32 ndarray. Both halves of
        a molecular cross-validation split are Poisson draws of ``p * rate`` and ``(1 - p) * rate``,
        independent given it, so it is the MCV ceiling's prediction (the truth is not: it leaves out
        the gamma noise and dropout the halves share).
    ``obs["cell_type"]``
        Categorical ``"type_0"``, ``"type_1"``, ...
    ``var_names``
        Gene symbols from the network, sorted alphabetically (so gene order carries no network
        structure a sequence model could exploit).
    ``var["is_tf"]``
        Whether the gene regulates another chosen gene.
    ``uns["true_grn"]``
        Dict of arrays ``source``, ``target`` (str) and ``sign`` (int, +1/-1): every network edge
        between chosen genes, with the sign used in the simulation.
    ``uns["synthetic_params"]``
        Every parameter above, including ``seed``, plus ``programs`` (cell type -> its TFs).

    Raises
    ------
    InputError
        On invalid parameters, or when ``n_genes`` exceeds the network's largest connected
        component.
    """
    params = dict(
        n_cells=n_cells, n_genes=n_genes, n_cell_types=n_cell_types, seed=seed, network=network,
        tfs_per_type=tfs_per_type, program_strength=program_strength, cell_noise=cell_noise,
        regulation_strength=regulation_strength, n_steps=n_steps, log_fold_range=log_fold_range,
        baseline_sd=baseline_sd, mean_library_size=mean_library_size, library_size_sd=library_size_sd,
        dispersion=dispersion, dropout=dropout,
    )  # fmt: skip
    _check_params(params)
    rng = np.random.default_rng(seed)

    # 1. Genes and edges.
    genes, edges, src, W = _network(network, n_genes, regulation_strength, rng)
    is_tf = np.zeros(n_genes, dtype=bool)
    is_tf[src] = True
    tfs = np.flatnonzero(is_tf)

    # 2. Cell types: proportions unequal, as in real tissue, but every type keeps >= half its
    # equal share so the rarest type still has cells in each split.
    programs = _choose_programs(len(tfs), n_cell_types, tfs_per_type, rng)
    share = 0.5 / n_cell_types + 0.5 * rng.dirichlet(np.full(n_cell_types, 2.0))
    labels = rng.choice(n_cell_types, size=n_cells, p=share)  # unsorted: cell order says nothing

    # 3. Regulation. TFs sit below zero by default (bias ~ N(-1, 0.5)) so a program is what turns
    # them on; other genes centre on zero so their regulators move them both ways.
    bias = np.where(is_tf, rng.normal(-1.0, 0.5, n_genes), rng.normal(0.0, 0.5, n_genes))
    external = np.zeros((n_cells, n_genes))
    for t, prog in enumerate(programs):
        external[np.ix_(labels == t, tfs[prog])] = program_strength
    external[:, tfs] += rng.normal(0.0, cell_noise, (n_cells, len(tfs)))
    drive = bias + external
    s = np.tanh(drive)
    for _ in range(n_steps):
        # Damped update (half old, half new): negative feedback loops in TRRUST would otherwise
        # make the synchronous iteration oscillate instead of settling.
        s = 0.5 * s + 0.5 * np.tanh(drive + (W.T @ s.T).T)

    # 4. Expression: relative mean per gene; baselines log-normal across genes.
    # Clipped at 2 sd: a tail gene 3 sd down would be all zeros, which real panels filter out.
    log_base = np.clip(rng.normal(0.0, baseline_sd, n_genes), -2 * baseline_sd, 2 * baseline_sd)
    rel = np.exp(log_base + 0.5 * log_fold_range * s)
    rel /= rel.sum(axis=1, keepdims=True)

    # 5. Measurement: library size, negative binomial as gamma-Poisson, dropout.
    counts, rate = _measure(
        rel,
        rng,
        mean_library_size=mean_library_size,
        library_size_sd=library_size_sd,
        dispersion=dispersion,
        dropout=dropout,
    )

    obs = pd.DataFrame(
        {"cell_type": pd.Categorical.from_codes(labels, [f"type_{t}" for t in range(n_cell_types)])},
        index=[f"cell_{c}" for c in range(n_cells)],
    )
    adata = ad.AnnData(X=log_normalize(counts), obs=obs, var=pd.DataFrame({"is_tf": is_tf}, index=genes))
    adata.layers["counts"] = counts
    adata.layers["truth"] = np.log1p(rel * TARGET_SUM).astype(np.float32)
    adata.layers["rate"] = rate
    adata.uns["true_grn"] = {
        "source": edges["tf"].to_numpy(dtype=str),
        "target": edges["target"].to_numpy(dtype=str),
        "sign": edges["sign"].to_numpy(dtype=np.int64),
    }
    adata.uns["synthetic_params"] = {
        **params,
        "programs": {f"type_{t}": genes[tfs[p]].to_numpy(dtype=str) for t, p in enumerate(programs)},
    }
    return adata


def _check_params(p: dict) -> None:
    """Raise :class:`InputError` naming the first invalid parameter."""
    vendored_grn_path(p["network"])
    for name in ("n_cells", "n_genes", "tfs_per_type"):
        if not isinstance(p[name], (int, np.integer)) or p[name] < 1:
            raise InputError(f"{name} must be a positive integer, got {p[name]!r}.")
    if not isinstance(p["n_cell_types"], (int, np.integer)) or p["n_cell_types"] < 2:
        raise InputError(
            f"n_cell_types must be an integer >= 2 (an annotation task needs two classes), got {p['n_cell_types']!r}."
        )
    if p["n_cells"] < p["n_cell_types"]:
        raise InputError(f"n_cells={p['n_cells']} is smaller than n_cell_types={p['n_cell_types']}.")
    if not isinstance(p["n_steps"], (int, np.integer)) or p["n_steps"] < 0:
        raise InputError(f"n_steps must be a non-negative integer, got {p['n_steps']!r}.")
    if p["n_genes"] < 2:
        raise InputError(f"n_genes must be >= 2 (a network needs an edge), got {p['n_genes']}.")
    if not (np.isfinite(p["mean_library_size"]) and p["mean_library_size"] > 0):
        raise InputError(f"mean_library_size must be a finite number > 0, got {p['mean_library_size']!r}.")
    for name in (
        "program_strength",
        "cell_noise",
        "regulation_strength",
        "log_fold_range",
        "baseline_sd",
        "library_size_sd",
        "dispersion",
        "dropout",
    ):
        if not (np.isfinite(p[name]) and p[name] >= 0):
            raise InputError(f"{name} must be a finite number >= 0, got {p[name]!r}.")


# ---------------------------------------------------------------------------------------------
# Synthetic Perturb-seq (the perturbation task's embedded default)


def _activities(drive: np.ndarray, W: sp.csr_matrix, n_steps: int, clamp: dict[int, float]) -> np.ndarray:
    """The damped network iteration of :func:`simulate_grn_dataset` with some genes clamped:
    s = tanh(drive); s = 0.5 s + 0.5 tanh(drive + W^T s), the clamped genes held at their value
    before every step and after the last (a knockout holds the gene's activity at -1 throughout,
    so its targets see the clamped value from the first step)."""
    s = np.tanh(drive)
    for g, v in clamp.items():
        s[:, g] = v
    for _ in range(n_steps):
        s = 0.5 * s + 0.5 * np.tanh(drive + (W.T @ s.T).T)
        for g, v in clamp.items():
            s[:, g] = v
    return s


def simulate_perturbseq(
    *,
    n_genes: int = 300,
    n_singles: int = 40,
    n_combos: int = 30,
    cells_per_condition: int = 60,
    n_control: int = 600,
    null_fraction: float = 0.2,
    knockdown_fraction: float = 0.3,
    knockdown_shift: float = 2.0,
    seed: int = 0,
    network: str = "trrust_human",
    cell_noise: float = 0.5,
    regulation_strength: float = 1.5,
    n_steps: int = 5,
    log_fold_range: float = 3.0,
    baseline_sd: float = 1.0,
    mean_library_size: float = 4000.0,
    library_size_sd: float = 0.3,
    dispersion: float = 0.2,
    dropout: float = 0.5,
    n_truth_draws: int = 200,
) -> ad.AnnData:
    """Simulate a Perturb-seq screen on a TRRUST subnetwork, with each condition's true shift kept.

    The network, signs and damped tanh iteration are those of :func:`simulate_grn_dataset` (one
    cell line instead of cell types: TFs sit at a positive bias ~ N(0.5, 0.5) so that removing
    them matters; per-cell input noise on every TF). Perturbations:

    - **knockout** (CRISPR KO; a ``1 - knockdown_fraction`` share of the singles, and both genes
      of every combo): the gene's activity is clamped at -1 through the iterations;
    - **knockdown** (CRISPRi): the gene's drive is shifted by ``-knockdown_shift``;
    - **null** perturbations (``null_fraction`` of the singles) hit genes with no target in the
      subnetwork: only the gene itself moves;
    - **combos** knock out two single-perturbed genes; pairs sharing targets are preferred, so tanh
      saturation on shared targets makes them non-additive, while pairs with disjoint downstream
      sets add up exactly (on the truth scale).

    Measurement as :func:`simulate_grn_dataset` (per-cell composition, log-normal library size,
    negative binomial, dropout), ``X = log1p(normalize_total(counts, 1e4))``.

    Truth: ``uns["true_shift"]`` (conditions x genes, ``uns["true_shift_conditions"]``), the
    noise-free mean shift of each condition against control on the scale of X with a fixed size
    factor (the control mean total), ``E[log1p(1e4 rel / S0) | condition] - E[... | ctrl]``,
    computed with common random numbers (the same ``n_truth_draws`` noise draws for every
    condition), so that a null perturbation moves exactly its own gene and disjoint perturbations
    add exactly. The per-cell normalization of X adds a small compositional shift on top.

    Returns
    -------
    AnnData with obs ``condition`` (``ctrl``, ``A+ctrl``, ``A+B``), ``perturbation_type``
    (``control``, ``knockout``, ``knockdown``, ``combo``), var ``gene_name``, ``is_tf``,
    ``n_targets``, ``layers["counts"]``, uns ``true_grn``, ``true_shift``,
    ``true_shift_conditions``, ``synthetic_params``. The GEARS obs/uns layout is added by
    :func:`scfmbench.perturbation.data.gears_layout`.
    """
    params = dict(
        n_genes=n_genes, n_singles=n_singles, n_combos=n_combos, cells_per_condition=cells_per_condition,
        n_control=n_control, null_fraction=null_fraction, knockdown_fraction=knockdown_fraction,
        knockdown_shift=knockdown_shift, seed=seed, network=network,
        cell_noise=cell_noise, regulation_strength=regulation_strength, n_steps=n_steps, log_fold_range=log_fold_range,
        baseline_sd=baseline_sd, mean_library_size=mean_library_size, library_size_sd=library_size_sd,
        dispersion=dispersion, dropout=dropout, n_truth_draws=n_truth_draws,
    )  # fmt: skip
    for name in ("n_genes", "n_singles", "cells_per_condition", "n_control", "n_truth_draws"):
        if not isinstance(params[name], (int, np.integer)) or params[name] < 1:
            raise InputError(f"simulate_perturbseq: {name} must be a positive integer, got {params[name]!r}.")
    if not isinstance(n_combos, (int, np.integer)) or n_combos < 0:
        raise InputError(f"simulate_perturbseq: n_combos must be an integer >= 0, got {n_combos!r}.")
    for name in ("null_fraction", "knockdown_fraction"):
        if not 0 <= params[name] <= 1:
            raise InputError(f"simulate_perturbseq: {name} must be in [0, 1], got {params[name]!r}.")
    rng = np.random.default_rng(seed)

    # Network (as simulate_grn_dataset).
    genes, edges, src, W = _network(network, n_genes, regulation_strength, rng)
    n_targets = np.bincount(src, minlength=n_genes)
    tfs, nulls = np.flatnonzero(n_targets > 0), np.flatnonzero(n_targets == 0)

    # Perturbed genes: TFs (most targets first is too easy; drawn at random) and null genes.
    n_null = min(int(round(null_fraction * n_singles)), len(nulls))
    n_tf = n_singles - n_null
    if n_tf > len(tfs):
        raise InputError(
            f"simulate_perturbseq: the subnetwork has {len(tfs)} TFs, fewer than the {n_tf} TF perturbations asked; "
            "lower n_singles or raise n_genes."
        )
    pert = np.concatenate([rng.choice(tfs, n_tf, replace=False), rng.choice(nulls, n_null, replace=False)])
    kinds = np.where(rng.random(n_singles) < knockdown_fraction, "knockdown", "knockout")
    # Combos among the perturbed genes, pairs sharing targets preferred (weight 1 + shared targets);
    # pairs with a null gene have disjoint effects (and add up).
    reach = (W != 0).astype(np.int64).tocsr()
    pairs = [(a, b) for i, a in enumerate(pert) for b in pert[i + 1 :]]
    if n_combos > len(pairs):
        raise InputError(f"simulate_perturbseq: only {len(pairs)} pairs of perturbed genes for n_combos={n_combos}.")
    shared = np.array([reach[a].multiply(reach[b]).nnz for a, b in pairs], dtype=float)
    chosen = rng.choice(len(pairs), n_combos, replace=False, p=(1 + shared) / (1 + shared).sum()) if n_combos else []
    combos = [tuple(sorted(pairs[i], key=lambda g: genes[g])) for i in chosen]

    bias = np.where(n_targets > 0, rng.normal(0.5, 0.5, n_genes), rng.normal(0.0, 0.5, n_genes))
    log_base = np.clip(rng.normal(0.0, baseline_sd, n_genes), -2 * baseline_sd, 2 * baseline_sd)

    def clamp_and_shift(kind_genes):
        clamp, shift = {}, np.zeros(n_genes)
        for g, kind in kind_genes:
            if kind == "knockdown":
                shift[g] -= knockdown_shift
            else:
                clamp[g] = -1.0
        return clamp, shift

    conditions = [("ctrl", "control", [])]
    conditions += [(f"{genes[g]}+ctrl", k, [(g, k)]) for g, k in zip(pert, kinds)]
    conditions += [(f"{genes[a]}+{genes[b]}", "combo", [(a, "knockout"), (b, "knockout")]) for a, b in combos]

    def relative(noise, kind_genes):
        clamp, shift = clamp_and_shift(kind_genes)
        drive = bias + shift + noise
        return np.exp(log_base + 0.5 * log_fold_range * _activities(drive, W, n_steps, clamp))

    # Truth with common random numbers: the same TF noise draws for every condition.
    truth_noise = np.zeros((n_truth_draws, n_genes))
    truth_noise[:, tfs] = rng.normal(0.0, cell_noise, (n_truth_draws, len(tfs)))
    rel_ctrl = relative(truth_noise, [])
    size = rel_ctrl.sum(1).mean()
    truth_ctrl = np.log1p(rel_ctrl * TARGET_SUM / size).mean(0)
    true_shift = np.stack(
        [np.log1p(relative(truth_noise, kg) * TARGET_SUM / size).mean(0) - truth_ctrl for _, _, kg in conditions[1:]]
    )

    # Cells.
    blocks, labels, types = [], [], []
    for name, kind, kg in conditions:
        n = n_control if name == "ctrl" else cells_per_condition
        noise = np.zeros((n, n_genes))
        noise[:, tfs] = rng.normal(0.0, cell_noise, (n, len(tfs)))
        blocks.append(relative(noise, kg))
        labels += [name] * n
        types += [kind] * n
    rel = np.concatenate(blocks)
    rel /= rel.sum(1, keepdims=True)
    order = rng.permutation(len(rel))  # cell order says nothing
    rel, labels, types = rel[order], np.asarray(labels)[order], np.asarray(types)[order]
    counts, _ = _measure(
        rel,
        rng,
        mean_library_size=mean_library_size,
        library_size_sd=library_size_sd,
        dispersion=dispersion,
        dropout=dropout,
    )

    obs = pd.DataFrame({"condition": labels, "perturbation_type": types}, index=[f"cell_{c}" for c in range(len(rel))])
    var = pd.DataFrame(
        {"gene_name": genes.to_numpy(dtype=str), "is_tf": n_targets > 0, "n_targets": n_targets}, index=genes
    )
    adata = ad.AnnData(X=log_normalize(counts), obs=obs, var=var)
    adata.layers["counts"] = counts
    adata.uns["true_grn"] = {
        "source": edges["tf"].to_numpy(dtype=str),
        "target": edges["target"].to_numpy(dtype=str),
        "sign": edges["sign"].to_numpy(dtype=np.int64),
    }
    adata.uns["true_shift"] = true_shift.astype(np.float64)
    adata.uns["true_shift_conditions"] = np.array([c for c, _, _ in conditions[1:]], dtype=str)
    adata.uns["synthetic_params"] = params
    return adata
