rule make_masks:
    input:
        prepared=PREPARED,
    output:
        masked=MASKED,
        heldout=HELDOUT,
    params:
        n_folds=IMPUTATION["n_folds"],
        min_library_size=min_library_size,
    log:
        "results/logs/imputation/{dataset}/seed{seed}/masks.log",
    benchmark:
        "results/benchmarks/imputation/{dataset}/seed{seed}/masks.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/make_masks.py"


rule impute_builtin:
    input:
        masked=MASKED,
    output:
        predictions=imputation_output(),
    params:
        method_params=method_params,
    log:
        imputation_log(),
    benchmark:
        imputation_benchmark()
    wildcard_constraints:
        method="|".join(BUILTIN_IMPUTATION),
    conda:
        "../../envs/magic.yaml"
    script:
        "../scripts/impute.py"


rule score_imputation:
    input:
        predictions=imputation_output(),
        heldout=HELDOUT,
        benchmark=imputation_benchmark(),
    output:
        metrics="results/imputation/{dataset}/{method}/seed{seed}/metrics.csv",
    log:
        "results/logs/imputation/{dataset}/{method}/seed{seed}.score.log",
    benchmark:
        "results/benchmarks/imputation/{dataset}/{method}/seed{seed}.score.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/score_imputation.py"
