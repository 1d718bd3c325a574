# Masked pretraining (scfmbench.pretrain; MAM paper, REFERENCE.md section 8): (dataset, backbone,
# strategy, seed) -> checkpoint on the training cells, then cell-type fine-tuning from it as
# annotation method {backbone}-{attention}-pt{strategy} beside {backbone}-{attention}-scratch (no
# pretraining, the same fine-tuning options), scored by score_annotation like any other method.
# scHyena's pretraining is the case backbone=schyena, strategy=uniform. Seeds run in one job per
# (dataset, backbone, strategy) with resources.group_seeds, each writing its own benchmark file.


rule pretrain:
    input:
        prepared=transformer_seeds(PREPARED),
    output:
        **(
            {"benchmark": per_seed("results/benchmarks/pretrain/{dataset}/{backbone}/{strategy}/seed{seed}.tsv")}
            if GROUP_SEEDS
            else {}
        ),
        checkpoint=transformer_seeds(PRETRAIN_CKPT),
        masked_set=transformer_seeds(PRETRAIN_MASKED),
        curves=transformer_seeds(PRETRAIN_CURVES),
    log:
        "results/logs/pretrain/{dataset}/{backbone}/{strategy}/seeds.log"
        if GROUP_SEEDS
        else "results/logs/pretrain/{dataset}/{backbone}/{strategy}/seed{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/{dataset}/{backbone}/{strategy}/seeds.tsv"
        if GROUP_SEEDS
        else "results/benchmarks/pretrain/{dataset}/{backbone}/{strategy}/seed{seed}.tsv"
    wildcard_constraints:
        backbone="schyena|scgpt|scbert|scfoundation",
        strategy=r"[a-z0-9_]+",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
    params:
        options=pretrain_options,
        backbone_params=pretrain_backbone_params,
        seeds=SEEDS,
    script:
        "../scripts/pretrain.py"


rule annotate_pretrained:
    input:
        prepared=transformer_seeds(PREPARED),
        checkpoint=pretrained_checkpoints,
    output:
        **({"benchmark": per_seed(annotation_benchmark())} if GROUP_SEEDS else {}),
        predictions=transformer_seeds(annotation_output()),
        run=transformer_seeds("results/annotation/{dataset}/{method}/seed{seed}/run.json"),
        curves=transformer_seeds(ANNOTATION_CURVES),
        embedding=transformer_seeds(EMBEDDING),
    log:
        "results/logs/annotation/{dataset}/{method}/seeds.log" if GROUP_SEEDS else annotation_log(),
    benchmark:
        "results/benchmarks/annotation/{dataset}/{method}/seeds.tsv" if GROUP_SEEDS else annotation_benchmark()
    wildcard_constraints:
        method="|".join(re.escape(m) for m in PRETRAINED_METHODS) or "(?!)",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
    params:
        method_params=pretrain_method_params,
        finetune=pretrain_finetune,
        seeds=SEEDS,
    script:
        "../scripts/annotate_pretrained.py"


rule report_pretraining:
    input:
        metrics=[f"results/annotation/{d}/{m}/seed{s}/metrics.csv" for d, m, _, _ in pretraining_runs() for s in SEEDS],
        predictions=[
            f"results/annotation/{d}/{m}/seed{s}/predictions.csv" for d, m, _, _ in pretraining_runs() for s in SEEDS
        ],
        masked_set=[
            PRETRAIN_MASKED.format(dataset=d, backbone=b, strategy=s, seed=seed)
            for d, b, s in PRETRAIN_GRID + schyena_pretrain_runs()
            for seed in SEEDS
        ],
    output:
        table_md="results/report/pretraining_table.md",
        table_csv="results/report/pretraining_table.csv",
        masked_md="results/report/masked_set_table.md",
        masked_csv="results/report/masked_set_table.csv",
        per_class="results/report/pretraining_per_class.csv",
        figure=report(
            "results/report/figures/pretraining.png", caption="../report/pretraining.rst", category="Pretraining"
        ),
    log:
        "results/logs/report/pretraining.log",
    benchmark:
        "results/benchmarks/report/pretraining.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        runs=[
            [
                d,
                m,
                b,
                s,
                {seed: PREPARED.format(dataset=d, seed=seed) for seed in SEEDS},
                {seed: f"results/annotation/{d}/{m}/seed{seed}/predictions.csv" for seed in SEEDS},
            ]
            for d, m, b, s in pretraining_runs()
        ],
    script:
        "../scripts/report_pretraining.py"
