# Perturbation prediction (GenoHoption Fig. 3; the GEARS protocol; docs/perturbation.md "Perturbation prediction").
# Data in GEARS' layout (X and uns as distributed; the synthetic screen gets them here), GEARS'
# simulation split per seed, one predictor job per (dataset, method), one scoring job per dataset,
# the Fig. 3 table and figure. Logic: scfmbench.perturbation.


rule perturb_data:
    input:
        downloads=dataset_downloads,
    output:
        data=PERTURB_DATA,
    log:
        "results/logs/perturbation/{dataset}/data.log",
    benchmark:
        "results/benchmarks/perturbation/{dataset}/data.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        dataset=perturb_dataset_config,
    script:
        "../scripts/perturb_data.py"


# Every seed's split in one job (each is a few draws over the condition list).
rule perturb_split:
    input:
        data=PERTURB_DATA,
    output:
        splits=per_seed(PERTURB_SPLIT),
    log:
        "results/logs/perturbation/{dataset}/split.log",
    benchmark:
        "results/benchmarks/perturbation/{dataset}/split.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        seeds=SEEDS,
        split=perturb_split_params,
    script:
        "../scripts/perturb_split.py"


# The scGPT-style generator (scgpt-<kernel>[-paperloss]). One job per seed, or with
# resources.group_seeds one per (dataset, method) writing each seed's benchmark file itself.
rule perturb_predict:
    input:
        data=PERTURB_DATA,
        split=transformer_seeds(PERTURB_SPLIT),
    output:
        **({"benchmark": per_seed(perturb_benchmark())} if GROUP_SEEDS else {}),
        predictions=transformer_seeds(perturb_output()),
        run=transformer_seeds("results/perturbation/{dataset}/{method}/seed{seed}/run.json"),
        curves=transformer_seeds(PERTURB_CURVES),
    log:
        "results/logs/perturbation/{dataset}/{method}/seeds.log" if GROUP_SEEDS else perturb_log(),
    benchmark:
        "results/benchmarks/perturbation/{dataset}/{method}/seeds.tsv" if GROUP_SEEDS else perturb_benchmark()
    wildcard_constraints:
        method="|".join(re.escape(m) for m in PERTURB_BUILTIN if m not in PERTURB_CONTROLS) or "(?!)",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
    params:
        method_params=perturb_method_params,
        graph=perturb_graph_params,
        seeds=SEEDS,
    script:
        "../scripts/perturb_predict.py"


# The controls and baselines (numpy only, well under a second per seed): one job per dataset runs
# every one of them and every seed, writing each (method, seed)'s benchmark file itself.
for _dataset in PERTURBATION["datasets"]:
    _controls = [m for m in perturb_methods(_dataset) if m in PERTURB_CONTROLS]
    if not _controls:
        continue

    rule:
        name:
            f"perturb_controls_{_dataset}"
        input:
            data=PERTURB_DATA.format(dataset=_dataset),
            splits=expand(PERTURB_SPLIT, dataset=_dataset, seed=SEEDS),
        output:
            predictions=[perturb_output(m).format(dataset=_dataset, seed=s) for m in _controls for s in SEEDS],
            run=[f"results/perturbation/{_dataset}/{m}/seed{s}/run.json" for m in _controls for s in SEEDS],
            benchmark=[perturb_benchmark(m).format(dataset=_dataset, seed=s) for m in _controls for s in SEEDS],
        log:
            f"results/logs/perturbation/{_dataset}/controls.log",
        benchmark:
            f"results/benchmarks/perturbation/{_dataset}/controls.tsv"
        conda:
            "../../envs/torch.yaml"
        params:
            methods=_controls,
            method_params={m: perturbation_method_params(config, m) for m in _controls},
            seeds=SEEDS,
        script:
            "../scripts/perturb_controls.py"


# One job scores every method and seed of a dataset (scoring is cheap next to a process start): a
# rule per dataset (perturb_score_<dataset>), since the methods it scores depend on the dataset.
for _dataset in PERTURBATION["datasets"]:

    rule:
        name:
            f"perturb_score_{_dataset}"
        input:
            data=PERTURB_DATA.format(dataset=_dataset),
            splits=expand(PERTURB_SPLIT, dataset=_dataset, seed=SEEDS),
            predictions=perturb_scored(_dataset, perturb_output()),
            benchmarks=perturb_scored(_dataset, perturb_benchmark()),
        output:
            metrics=perturb_scored(_dataset, "results/perturbation/{dataset}/{method}/seed{seed}/metrics.csv"),
            conditions=perturb_scored(_dataset, "results/perturbation/{dataset}/{method}/seed{seed}/conditions.csv"),
        log:
            f"results/logs/perturbation/{_dataset}/score.log",
        benchmark:
            f"results/benchmarks/perturbation/{_dataset}/score.tsv"
        conda:
            "../../envs/torch.yaml"
        params:
            dataset=_dataset,
            methods=perturb_methods(_dataset),
            seeds=SEEDS,
        script:
            "../scripts/perturb_score.py"


rule perturb_report:
    input:
        metrics=perturbation_metrics_files(),
    output:
        md="results/report/perturbation_table.md",
        csv="results/report/perturbation_table.csv",
        html=report(
            "results/report/perturbation_table.html",
            caption="../report/perturbation_table.rst",
            category="Perturbation",
        ),
        png=report(
            "results/report/figures/perturbation.png", caption="../report/perturbation.rst", category="Perturbation"
        ),
    log:
        "results/logs/report/perturbation.log",
    benchmark:
        "results/benchmarks/report/perturbation.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/perturb_report.py"
