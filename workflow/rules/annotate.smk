rule annotate_control:
    input:
        prepared=PREPARED,
    output:
        predictions=annotation_output(),
        run="results/annotation/{dataset}/{method}/seed{seed}/run.json",
    log:
        annotation_log(),
    benchmark:
        annotation_benchmark()
    wildcard_constraints:
        method="|".join(BUILTIN_ANNOTATION),
    conda:
        "../../envs/torch.yaml"
    params:
        method_params=method_params,
    script:
        "../scripts/annotate.py"


# {backbone}-{attention}[-{ablation}][.{option}{value}] (config annotation.methods, fewshot,
# sensitivity). Graph kernels get the dataset's gene graph (the ablation's variant) as input.
# One job per seed, or with resources.group_seeds one per (dataset, method) running every seed and
# writing each seed's benchmark file itself: the same per-seed files come out either way.
rule annotate_transformer:
    input:
        unpack(transformer_graph),
        prepared=transformer_seeds(PREPARED),
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
        method="|".join(re.escape(m) for m in TRANSFORMERS) or "(?!)",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
    params:
        method_params=method_params,
        seeds=SEEDS,
    script:
        "../scripts/annotate.py"


# One job per (dataset, method) scores every seed: scoring is cheap next to starting a process.
rule score_annotation:
    input:
        prepared=per_seed(PREPARED),
        predictions=per_seed(annotation_output()),
        benchmark=per_seed(annotation_benchmark()),
    output:
        metrics=per_seed("results/annotation/{dataset}/{method}/seed{seed}/metrics.csv"),
    log:
        "results/logs/annotation/{dataset}/{method}/score.log",
    benchmark:
        "results/benchmarks/annotation/{dataset}/{method}/score.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        seeds=SEEDS,
        rare_share=ANNOTATION["rare_share"],
    script:
        "../scripts/score_annotation.py"
