# scHyena (REFERENCE.md section 2): masked-expression pretraining on the training cells (rule
# pretrain in pretrain.smk: backbone schyena, strategy uniform), then fine-tuning for cell types and for doublets, the
# scHyena imputer, and a UMAP of [CLS] embeddings.
# Every input is the dataset at full length (all genes). Logic: src/scfmbench/schyena/workflow.py,
# one function per rule; options: config params.schyena (SchyenaParams), read through method_params.


rule annotate_schyena:
    input:
        prepared=PREPARED,
        pretrained="results/pretrain/{dataset}/{method}/uniform/seed{seed}/checkpoint.pt",
    output:
        predictions=annotation_output(),
        run="results/annotation/{dataset}/{method}/seed{seed}/run.json",
        curves=ANNOTATION_CURVES,
        finetuned="results/{method}/{dataset}/seed{seed}/finetuned.pt",
        embedding=EMBEDDING,
    log:
        annotation_log(),
    benchmark:
        annotation_benchmark()
    wildcard_constraints:
        method="schyena",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
    params:
        method_params=method_params,
    script:
        "../scripts/schyena_finetune.py"


rule detect_doublets_schyena:
    input:
        prepared=PREPARED,
        pretrained="results/pretrain/{dataset}/{method}/uniform/seed{seed}/checkpoint.pt",
    output:
        predictions="results/doublet/{dataset}/{method}/seed{seed}/predictions.csv",
        run="results/doublet/{dataset}/{method}/seed{seed}/run.json",
        curves=DOUBLET_CURVES,
    log:
        "results/logs/doublet/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/doublet/{dataset}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method="schyena",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
    params:
        method_params=method_params,
    script:
        "../scripts/schyena_doublet.py"


# The doublet task's negative control: every cell of the same augmented test split called a doublet.
rule detect_doublets_control:
    input:
        prepared=PREPARED,
    output:
        predictions="results/doublet/{dataset}/{method}/seed{seed}/predictions.csv",
    log:
        "results/logs/doublet/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/doublet/{dataset}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method="all_doublet",
    conda:
        "../../envs/torch.yaml"
    params:
        schyena_params=schyena_params,
    script:
        "../scripts/schyena_doublet_control.py"


rule score_doublets:
    input:
        predictions=per_seed("results/doublet/{dataset}/{method}/seed{seed}/predictions.csv"),
        benchmark=per_seed("results/benchmarks/doublet/{dataset}/{method}/seed{seed}.tsv"),
    output:
        metrics=per_seed("results/doublet/{dataset}/{method}/seed{seed}/metrics.csv"),
    log:
        "results/logs/doublet/{dataset}/{method}/score.log",
    benchmark:
        "results/benchmarks/doublet/{dataset}/{method}/score.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        seeds=SEEDS,
    script:
        "../scripts/schyena_score_doublet.py"


rule impute_schyena:
    input:
        data=imputer_input,
    output:
        predictions=imputer_output(),
        curves=IMPUTER_CURVES,
    log:
        imputer_log(),
    benchmark:
        imputer_benchmark()
    wildcard_constraints:
        method="schyena",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
    params:
        method_params=method_params,
    script:
        "../scripts/schyena_impute.py"


# One figure per dataset, from the first repeat seed's embedding file (annotate_schyena writes both states).
rule schyena_umap:
    input:
        prepared=PREPARED.format(dataset="{dataset}", seed=SEEDS[0]),
        embedding=EMBEDDING.replace("{seed}", str(SEEDS[0])),
    output:
        png=report(
            "results/report/figures/{method}_umap_{dataset}.png",
            caption="../report/schyena_umap.rst",
            category="scHyena",
        ),
    log:
        "results/logs/{method}/{dataset}/umap.log",
    benchmark:
        "results/benchmarks/{method}/{dataset}/umap.tsv"
    wildcard_constraints:
        method="schyena",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=gpu_request,
    params:
        method_params=method_params,
        seed=SEEDS[0],
    script:
        "../scripts/schyena_umap.py"
