# Imputation under two protocols, selected by imputation.protocols: masking (task "imputation":
# make_masks) and molecular cross-validation (task "denoising": make_mcv_split). Every imputer rule
# carries the {task} wildcard, reads imputer_input and writes imputer_output, so one rule (and one
# rule file per added method, workflow/rules/methods/<id>.smk) serves both protocols.


rule make_masks:
    input:
        prepared=PREPARED,
    output:
        masked=MASKED,
        heldout=HELDOUT,
    log:
        "results/logs/imputation/{dataset}/seed{seed}/masks.log",
    benchmark:
        "results/benchmarks/imputation/{dataset}/seed{seed}/masks.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        n_folds=IMPUTATION["n_folds"],
        min_library_size=min_library_size,
    script:
        "../scripts/make_masks.py"


rule make_mcv_split:
    input:
        prepared=PREPARED,
    output:
        train=MCV_TRAIN,
        test=MCV_TEST,
    log:
        "results/logs/denoising/{dataset}/seed{seed}/split.log",
    benchmark:
        "results/benchmarks/denoising/{dataset}/seed{seed}/split.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        train_fraction=mcv_train_fraction,
        min_library_size=min_library_size,
    script:
        "../scripts/make_mcv_split.py"


# Registered imputers that need no torch (scfmbench.impute.methods): none, magic.
# Imputers run on one thread (threads: 1) unless --set-threads <rule>=N says otherwise: the same
# seed gives the same numbers only at the same thread count (a DCA rerun on more threads stopped a
# fold at another epoch), and the count is recorded in each predictions.npz (provenance_json).
rule impute_builtin:
    input:
        data=imputer_input,
    output:
        predictions=imputer_output(),
    log:
        imputer_log(),
    benchmark:
        imputer_benchmark()
    wildcard_constraints:
        method="none|magic",
    conda:
        "../../envs/magic.yaml"
    threads: 1
    params:
        method_params=method_params,
    script:
        "../scripts/impute.py"


# DCA, the PyTorch port (scfmbench.impute.dca); parameters from params.dca. Torch threads follow the
# job's threads, pinned to 1 (small batches of 32 cells gain nothing from more, and the thread count
# is part of what makes a rerun reproducible: see above; --set-threads impute_dca=N changes it).
rule impute_dca:
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
        method="dca",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
    params:
        method_params=method_params,
    script:
        "../scripts/impute.py"


# The original dca package (Keras/TensorFlow) in its own environment; needs --use-conda (the env
# cannot be installed beside this project). A command-line script, not `script:`, because Snakemake's
# script preamble cannot be imported by that environment's Python 3.8.
rule impute_dca_original:
    input:
        data=imputer_input,
    output:
        predictions=imputer_output("dca_original"),
    log:
        imputer_log("dca_original"),
    benchmark:
        imputer_benchmark("dca_original")
    conda:
        "../../envs/dca.yaml"
    threads: 1
    params:
        script=Path(workflow.basedir) / "workflow" / "scripts" / "impute_dca_original.py",
        dca_params=dca_original_params,
    shell:
        "python {params.script:q} --input {input.data:q} --output {output.predictions:q}"
        " --seed {wildcards.seed} --params {params.dca_params:q} --threads {threads} > {log:q} 2>&1"


# Controls read from the held-out file (scfmbench.impute.controls), requested only on datasets that
# have what they read (has_truth), an error elsewhere: perfect, the noise-free truth (both protocols;
# the ceiling of the *_truth metrics), and true_rate, the Poisson rate the counts were drawn from
# (MCV only; the ceiling of the MCV losses).
rule impute_perfect:
    input:
        heldout=heldout_input,
    output:
        predictions=imputer_output("perfect"),
    log:
        imputer_log("perfect"),
    benchmark:
        imputer_benchmark("perfect")
    conda:
        "../../envs/torch.yaml"
    params:
        control="perfect",
    script:
        "../scripts/impute_oracle.py"


rule impute_true_rate:
    input:
        heldout=heldout_input,
    output:
        predictions=imputer_output("true_rate"),
    log:
        imputer_log("true_rate"),
    benchmark:
        imputer_benchmark("true_rate")
    wildcard_constraints:
        task="denoising",
    conda:
        "../../envs/torch.yaml"
    params:
        control="true_rate",
    script:
        "../scripts/impute_oracle.py"


# One job per (task, dataset, method) scores every seed.
rule score_imputation:
    input:
        predictions=per_seed(imputer_output()),
        heldout=heldout_inputs,
        benchmark=per_seed(imputer_benchmark()),
    output:
        metrics=per_seed("results/{task}/{dataset}/{method}/seed{seed}/metrics.csv"),
    log:
        "results/logs/{task}/{dataset}/{method}/score.log",
    benchmark:
        "results/benchmarks/{task}/{dataset}/{method}/score.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        seeds=SEEDS,
    script:
        "../scripts/score_imputation.py"
