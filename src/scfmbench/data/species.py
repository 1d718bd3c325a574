"""A dataset's species from its gene names (the loaders record it in the provenance; the graph
build refuses a regulatory database of another species, :mod:`scfmbench.graphs.symbols`)."""

from __future__ import annotations

SPECIES = ("human", "mouse")
UNKNOWN_SPECIES = "unknown"


def detect_species(names, *, min_names: int = 20, share: float = 0.9) -> str:
    """``'human'``, ``'mouse'`` or ``'unknown'`` from a dataset's gene names.

    Ensembl IDs tell by prefix (``ENSG`` human, ``ENSMUSG`` mouse). Symbols tell by case: HGNC
    (human) symbols are upper case (``SOX17``; a few such as ``C1orf112`` are not), MGI (mouse)
    symbols are capitalized (``Sox17``, ``0610005C13Rik``); rat (RGD) symbols look like mouse ones.
    A species is returned when at least ``share`` of the names (at least ``min_names`` with a letter)
    agree; otherwise ``'unknown'`` (declare it with ``datasets.<name>.species``).
    """
    names = [str(n) for n in names]
    ensembl = [n for n in names if n.startswith("ENS")]
    if names and len(ensembl) >= share * len(names):
        for species, prefix in (("human", "ENSG"), ("mouse", "ENSMUSG")):
            if sum(n.startswith(prefix) for n in ensembl) >= share * len(ensembl):
                return species
        return UNKNOWN_SPECIES
    lettered = [n for n in names if any(c.isalpha() for c in n)]
    if len(lettered) < min_names:
        return UNKNOWN_SPECIES
    upper = sum(n == n.upper() for n in lettered)
    if upper >= share * len(lettered):
        return "human"
    if len(lettered) - upper >= share * len(lettered):
        return "mouse"
    return UNKNOWN_SPECIES
