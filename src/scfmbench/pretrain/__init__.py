"""Masked-expression pretraining as one stage for every backbone (``workflow/rules/pretrain.smk``).

(backbone, masking strategy, dataset, seed) -> checkpoint, by masked-expression modelling on the
dataset's training cells (validation cells monitored with fixed masks, test cells never read);
cell-type fine-tuning then starts from that checkpoint
(:func:`scfmbench.annotation.transformer.annotate_transformer` with ``pretrained=``).

- :mod:`.masking`: the masking strategies, one file each (``uniform``, ``stratified``,
  ``expression``, ``mam``), registered by name;
- :mod:`.loop`: the one masked-expression training loop (scHyena's pretraining and imputer run it);
- :mod:`.backbones`: how each backbone reads a masked batch (scHyena, scGPT-, scBERT- and
  scFoundation-style), checkpoints and the fine-tuning wrapper that keeps MAM's summary;
- :mod:`.workflow`: one function per rule;
- :mod:`.analysis`: the masked-set table (what each strategy masks).
"""
