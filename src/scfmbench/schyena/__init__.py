"""scHyena's tasks: masked-expression pretraining, cell-type fine-tuning, doublet detection, CLS UMAP.

The model itself is :mod:`scfmbench.models.schyena`; its imputer is :mod:`scfmbench.impute.schyena`.
This package holds what the workflow runs with it, following the paper's conventions
(``REFERENCE.md`` section 2; Oh et al., arXiv 2310.02713):

- :mod:`.params`: every option of the ``params.schyena`` config entry, with its default (no torch);
- :mod:`.doublets`: doublet simulation, doublet metrics and scoring (no torch);
- :mod:`.tasks`: full-length inputs, pretraining, checkpoints, fine-tuning, doublet detection and
  CLS embeddings (torch);
- :mod:`.umap`: the UMAP of CLS embeddings coloured by cell type (scanpy, matplotlib Agg);
- :mod:`.workflow`: one function per workflow rule (read inputs, call the above, write outputs).

Inputs are always at full length: every gene of the dataset in its fixed order (no HVG selection),
values = the log-normalized ``X``, gene ids ``0 .. G-1``.
"""
