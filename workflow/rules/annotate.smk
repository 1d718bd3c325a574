rule annotate_control:
    input:
        prepared=PREPARED,
    output:
        predictions=annotation_output(),
        run="results/annotation/{dataset}/{method}/seed{seed}/run.json",
    params:
        method_params=method_params,
    log:
        annotation_log(),
    benchmark:
        annotation_benchmark()
    wildcard_constraints:
        method="|".join(BUILTIN_ANNOTATION),
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/annotate.py"


rule annotate_transformer:
    input:
        prepared=PREPARED,
    output:
        predictions=annotation_output(),
        run="results/annotation/{dataset}/{method}/seed{seed}/run.json",
    params:
        method_params=method_params,
    threads: 2
    resources:
        gpu=gpu_request,
    log:
        annotation_log(),
    benchmark:
        annotation_benchmark()
    wildcard_constraints:
        method="|".join(TRANSFORMERS) or "(?!)",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/annotate.py"


rule score_annotation:
    input:
        prepared=PREPARED,
        predictions=annotation_output(),
        benchmark=annotation_benchmark(),
    output:
        metrics="results/annotation/{dataset}/{method}/seed{seed}/metrics.csv",
    log:
        "results/logs/annotation/{dataset}/{method}/seed{seed}.score.log",
    benchmark:
        "results/benchmarks/annotation/{dataset}/{method}/seed{seed}.score.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/score_annotation.py"
