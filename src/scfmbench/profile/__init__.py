"""Memory and speed of attention mechanisms and scHyena across sequence lengths.

- :mod:`~scfmbench.profile.mechanisms`: what can be profiled (every attention kernel, ``gat``,
  ``schyena``, the Hugging Face / performer-pytorch implementations), one registry;
- :mod:`~scfmbench.profile.measure`: the measured region, one point per fresh process, memory
  caps and time-outs turned into result rows, the sweep;
- :mod:`~scfmbench.profile.analysis`: fitted scaling exponents, the figures and tables of the
  workflow's ``profile_report`` rule;
- :mod:`~scfmbench.profile.gat`: the GAT-style layer on materialised K-hop edges.
- :mod:`~scfmbench.profile.hf`: Hugging Face's Longformer / BigBird attention compiled from the
  installed transformers source without importing its model stack (~3 s less per point).

The workflow runs one job per (mechanism, length, batch, pass) (``workflow/rules/profile.smk``);
``python -m scfmbench.bench.attention`` and ``python -m scfmbench.bench.hyena`` are command-line
front ends to the same code.
"""

from scfmbench.profile.measure import (
    COLUMNS,
    PASSES,
    PointSpec,
    measure_point,
    measure_region,
    profile_point,
    run_point,
    sweep,
    write_rows,
)
from scfmbench.profile.mechanisms import (
    Shape,
    Workload,
    build_workload,
    check_mechanisms,
    mechanism_names,
    random_cell_graphs,
    register_mechanism,
)

__all__ = [
    "COLUMNS",
    "PASSES",
    "PointSpec",
    "Shape",
    "Workload",
    "build_workload",
    "check_mechanisms",
    "mechanism_names",
    "measure_point",
    "measure_region",
    "profile_point",
    "random_cell_graphs",
    "register_mechanism",
    "run_point",
    "sweep",
    "write_rows",
]
