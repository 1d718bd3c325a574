rule load_dataset:
    input:
        downloads=dataset_downloads,
    output:
        raw="results/data/{dataset}/raw.h5ad",
    log:
        "results/logs/data/{dataset}/load.log",
    benchmark:
        "results/benchmarks/data/{dataset}/load.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        dataset=dataset_config,
    script:
        "../scripts/load_dataset.py"


rule prepare_dataset:
    input:
        raw=raw_dataset,
    output:
        prepared=PREPARED,
    log:
        "results/logs/data/{dataset}/seed{seed}/prepare.log",
    benchmark:
        "results/benchmarks/data/{dataset}/seed{seed}/prepare.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        split=split_config,
    script:
        "../scripts/prepare_dataset.py"
