"""One function per pretraining rule (``workflow/rules/pretrain.smk``): read, call, write.

=====================  ===========================================================================
rule                   function and outputs
=====================  ===========================================================================
pretrain               :func:`pretrain_main`: ``results/pretrain/{dataset}/{backbone}/{strategy}/``
                       ``seed{seed}/checkpoint.pt`` and ``masked_set.csv`` (what the strategy masks)
annotate_pretrained    :func:`finetune_main`: the annotation contract's ``predictions.csv`` and
                       ``run.json`` for method ``{backbone}-{attention}-pt{strategy}``
report_pretraining     :func:`scfmbench.pretrain.analysis.report_main`: tables and figure
=====================  ===========================================================================

``options`` is the config's ``pretraining`` block; a backbone's model options come from
``params.<backbone>`` (the same as its from-scratch runs, so both have one architecture).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from scfmbench import InputError
from scfmbench.pretrain.masking import MaskingStrategy, build_strategy, strategy_for

log = logging.getLogger(__name__)

#: Options of the ``pretraining`` block the loop reads (the rest choose the grid).
LOOP_KEYS = (
    "steps",
    "batch_size",
    "lr",
    "lr_pretrained",
    "weight_decay",
    "grad_clip",
    "eval_every",
    "patience",
    "amsgrad",
    "new_layers",
)


def pretrain_backbone(
    adata,
    *,
    backbone: str,
    strategy: MaskingStrategy,
    seed: int,
    params: dict | None = None,
    attention: str = "full",
    init: str | None = None,
    init_key: str = "gene",
    steps: int = 40,
    batch_size: int = 16,
    lr: float = 1e-3,
    lr_pretrained: float | None = None,
    weight_decay: float = 5e-4,
    grad_clip: float | None = None,
    eval_every: int | None = None,
    patience: int | None = None,
    amsgrad: bool = True,
    new_layers: str = "released",
    device=None,
):
    """Pretrain a token backbone by masked-expression modelling on the training cells of ``adata``.

    Returns ``(model, history, (train cells, valid cells))``: the :class:`~scfmbench.pretrain.backbones.TokenMasked`
    model (eval mode), its :class:`~scfmbench.pretrain.loop.PretrainHistory` and the loop's data.
    ``params``: the backbone's model options (``params.<backbone>``; training keys ignored);
    ``init``: released weights to continue from (scFoundation ``models.ckpt``, entry ``init_key``);
    then the released parameters train at ``lr_pretrained`` and the new ones (``new_layers``:
    MAM's released list, or only what did not load) at ``lr`` (MAM: 1e-5 and 1e-4). The optimizer
    defaults are MAM's released ones: Adam with amsgrad, weight decay 5e-4, no gradient clipping
    (``pretrain/main.py`` calls ``clip_grad_norm_`` once, before training). ``seed`` seeds
    initialisation, masks, batch order and the scorer's subsets.
    """
    from scfmbench.annotation.transformer import BACKBONES, build_config
    from scfmbench.pretrain.backbones import TokenMasked, masked_cells, reader
    from scfmbench.pretrain.loop import train_masked
    from scfmbench.schyena.tasks import resolve_device, seeded
    from scfmbench.train import TRAIN_KEYS

    reader(backbone)  # a clear error for backbones without values to mask
    spec = BACKBONES[backbone]
    device = resolve_device(device)
    model_params = {
        k: v
        for k, v in (params or {}).items()
        if k not in TRAIN_KEYS and k not in ("kernel_config", "checkpoint", "token_dictionary")
    }
    max_len = (params or {}).get("max_len", spec.train_defaults.get("max_len", 512))
    split = adata.obs["split"].astype(str).to_numpy()
    train, valid = np.flatnonzero(split == "train"), np.flatnonzero(split == "valid")
    if len(train) == 0:
        raise InputError("pretraining needs training cells (obs['split'] == 'train'); the dataset has none")
    with seeded(seed, device):
        pretrained_names: set[str] = set()
        if init:
            if backbone != "scfoundation":
                raise InputError(
                    f"config key 'pretraining.init.{backbone}': released weights load for scfoundation here (scGPT "
                    "and Geneformer folders fine-tune through params.<backbone>.checkpoint)"
                )
            from scfmbench.models.scfoundation import load_scfoundation_checkpoint

            net, load = load_scfoundation_checkpoint(init, key=init_key, n_classes=1, attention=attention)
            if net.cfg.n_genes != adata.n_vars:
                raise InputError(
                    f"{init}: the released model reads {net.cfg.n_genes} genes, the dataset has {adata.n_vars}; map "
                    "the dataset onto the model's gene list first"
                )
            pretrained_names = {"backbone." + k for k in net.state_dict() if k not in load.missing}
        else:
            net = spec.model(
                build_config(spec, backbone, n_genes=adata.n_vars, n_classes=1, attention=attention, **model_params)
            )
        scorer = strategy.make_scorer(net.cfg.d_model) if strategy.needs_scorer else None
        model = TokenMasked(backbone, net, scorer).to(device)
        tok, _ = spec.tokenizer(adata, net.cfg, train, max_len, np.random.default_rng(seed))
        data, monitor = masked_cells(model, tok(train)), masked_cells(model, tok(valid)) if len(valid) else None
        hist = train_masked(
            model,
            data,
            strategy=strategy,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            generator=torch.Generator().manual_seed(seed),
            valid=monitor,
            eval_every=eval_every,
            grad_clip=grad_clip,
            weight_decay=weight_decay,
            lr_pretrained=lr_pretrained,
            pretrained=pretrained_names,
            amsgrad=amsgrad,
            new_layers=new_layers,
            patience=patience,
        )
    return model, hist, (data, monitor)


def pretrain_main(
    prepared_path,
    checkpoint_path,
    masked_set_path,
    *,
    dataset: str,
    backbone: str,
    strategy: str,
    seed: int,
    options: dict,
    params: dict | None = None,
) -> None:
    """One (dataset, backbone, strategy, seed): pretrain, save the checkpoint, write the masked-set
    statistics. scHyena is the case that writes scHyena's own checkpoint
    (:func:`scfmbench.schyena.workflow.pretrain_main`, options from ``params.schyena``)."""
    from scfmbench.data.contract import read_prepared
    from scfmbench.pretrain.analysis import masked_set_stats, write_masked_set
    from scfmbench.provenance import provenance

    strat = strategy_for(strategy, options)
    adata = read_prepared(prepared_path)
    if backbone == "schyena":
        from scfmbench.pretrain.loop import MaskedCells
        from scfmbench.schyena.tasks import SchyenaMasked, dense_values, load_checkpoint
        from scfmbench.schyena.workflow import pretrain_main as schyena_pretrain

        schyena_pretrain(
            prepared_path,
            checkpoint_path,
            dataset=dataset,
            seed=seed,
            params=params,
            strategy=None if strategy == "uniform" else strat,
        )
        model, _ = load_checkpoint(checkpoint_path)
        rows = np.flatnonzero(adata.obs["split"].astype(str).to_numpy() == "train")
        data, masked = MaskedCells(torch.from_numpy(dense_values(adata, rows))), SchyenaMasked(model)
        gene_index = None
        if strategy == "uniform":
            from scfmbench.schyena.params import SchyenaParams

            p = SchyenaParams.from_dict(params)
            strat = build_strategy("uniform", low=p.mask_low, high=p.mask_high)
    else:
        loop = {k: options[k] for k in LOOP_KEYS if options.get(k) is not None}
        init = (options.get("init") or {}).get(backbone)
        masked, hist, (data, _) = pretrain_backbone(
            adata,
            backbone=backbone,
            strategy=strat,
            seed=seed,
            params=params,
            attention=options.get("attention", "full"),
            init=init,
            init_key=options.get("init_key", "gene"),
            **loop,
        )
        from scfmbench.pretrain.backbones import save_pretrained

        run_config = {
            **provenance(),
            "dataset": dataset,
            "prepared": str(prepared_path),
            "seed": int(seed),
            "genes": adata.var_names.tolist(),
            "init": init,
            "pretrain": {
                **loop,
                "attention": options.get("attention", "full"),
                "cells": "train split only (valid monitored, test never read)",
            },
            "history": dataclasses.asdict(hist),
            "num_params": sum(p.numel() for p in masked.parameters()),
        }
        save_pretrained(checkpoint_path, masked, strategy=strat, run_config=run_config)
        gene_index = data.inputs.gene_ids
    stats = masked_set_stats(masked, strat, data, adata=adata, gene_index=gene_index, seed=seed)
    write_masked_set(stats, masked_set_path, dataset=dataset, backbone=backbone, strategy=strategy, seed=seed)


def finetune_main(
    method: str,
    prepared_path,
    checkpoint_path,
    predictions_path,
    run_path,
    *,
    seed: int,
    params: dict | None = None,
    finetune: dict | None = None,
    embedding_path=None,
) -> None:
    """Fine-tune ``{backbone}-{attention}-pt{strategy}`` for cell types from its pretraining
    checkpoint, or train ``{backbone}-{attention}-scratch`` (no checkpoint) with the same options:
    ``params.<backbone>`` with the ``pretraining.finetune`` training options over them.
    ``embedding_path``: every cell's embedding, fine-tuned and (from a checkpoint) pretrained-only."""
    from scfmbench.annotation import run_annotation

    params = {**(params or {}), **(finetune or {})}
    run_annotation(
        method,
        prepared_path,
        predictions_path,
        seed=seed,
        params=params,
        record_path=run_path,
        pretrained=checkpoint_path,
        embedding_path=embedding_path,
    )


def pretrained_method(backbone: str, attention: str, strategy: str) -> str:
    """The annotation method id of a fine-tuning from a pretraining checkpoint."""
    return f"{backbone}-{attention}-pt{strategy}"


def scratch_method(backbone: str, attention: str) -> str:
    """The annotation method id of the from-scratch run beside the fine-tunings (same options)."""
    return f"{backbone}-{attention}-scratch"


def parse_pretrained_method(method: str) -> tuple[str, str] | None:
    """``{backbone}-{attention}-pt{strategy}`` -> (``{backbone}-{attention}``, strategy);
    ``{backbone}-{attention}-scratch`` -> (``{backbone}-{attention}``, None); else None."""
    if method.endswith("-scratch"):
        return method.removesuffix("-scratch"), None
    base, sep, strategy = method.rpartition("-pt")
    return (base, strategy) if sep and base and strategy else None
