# Dataset downloads: manifest entry E (config/manifest.yaml) -> resources/downloads/E, HTTPS,
# sha256 verified (recorded in the lock file on first download; downloads.strict refuses unknown
# hashes). Logic in scfmbench.data.manifest.fetch. Run on the submitting host: cluster nodes often
# have no internet access.


localrules:
    download_file,


rule download_file:
    output:
        file="resources/downloads/{entry}",
    log:
        "results/logs/downloads/{entry}.log",
    benchmark:
        "results/benchmarks/downloads/{entry}.tsv"
    wildcard_constraints:
        entry=r"[A-Za-z0-9_.-]+",
    conda:
        "../../envs/torch.yaml"
    params:
        downloads=config["downloads"],
    script:
        "../scripts/download_file.py"
