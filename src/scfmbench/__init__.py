"""scfmbench: a reproducible benchmarking harness for single-cell RNA-seq foundation models.

Layers. A module imports only from its own layer and the layers above it in this table (lower
layers first; ``tests/test_layers.py`` reads the table and enforces it, at module level and inside
functions alike: a lazy import is still a dependency). A name covers its submodules; the longest
name that matches a module decides its layer. Within a layer, imports form no circle either.

==========  ==========================================================================================
layer       modules
==========  ==========================================================================================
base        scfmbench, _io, _rss, _smk, provenance, download, metrics, stats, curves, results
data        data
graphs      graphs
models      models
training    train, pretrain, pretrain.loop, pretrain.masking, pretrain.backbones
config      config
tasks       annotation, impute, perturbation, embedding, schyena, pretrain.workflow, pretrain.analysis
report      report
tools       bench, profile
==========  ==========================================================================================

- **base**: what every layer uses: atomic writes (``_io``), memory and job glue (``_rss``, ``_smk``:
  what every workflow script and job does first), provenance, downloads, metrics, statistics,
  learning curves, metrics records.
- **data** -> **graphs** -> **models**: datasets and their contract; gene graphs; the models
  (attention kernels registered in :data:`scfmbench.models.attention.KERNELS`).
- **training**: the one home for what every trainer shares: the classification loop
  (:mod:`scfmbench.train`: steps, schedules, early stopping, mixed precision, curves, and the
  training keys :data:`scfmbench.train.TRAIN_KEYS`) and the masked-expression loop with its
  masking strategies (:data:`scfmbench.pretrain.masking.STRATEGIES`) and backbone readers
  (:data:`scfmbench.pretrain.backbones.READERS`).
- **config**: validation reads what it needs from those registries; it never imports a task.
- **tasks**: annotation, imputation, perturbation, masked pretraining's workflow, embeddings and
  scHyena's tasks; they may use one another (without a circle).
- **report**: tables, figures and checks over every task's results.
- **tools**: benchmarks and profiles on top (they may import anything below).

No private name (``_x``) is imported from another package (``scfmbench.<package>``).
"""

__version__ = "0.1.0"


class InputError(ValueError):
    """Bad user input (a config value, a data file, a column): the message says what and how to fix it."""
