# Gene graphs (GenoHoption's Seq2Graph): regulatory databases + co-expression on the training cells.
# Helpers (DATABASES, GRAPH, graph_spec, ...) live in common.smk; logic in scfmbench.graphs.workflow.
# Downloads run on the submitting host: cluster nodes often have no internet access.


localrules:
    download_database,


rule download_database:
    output:
        database="results/databases/{database}/{filename}",
    log:
        "results/logs/databases/{database}/{filename}.log",
    benchmark:
        "results/benchmarks/databases/{database}/{filename}.tsv"
    wildcard_constraints:
        filename=r"[A-Za-z0-9._+-]+",
    conda:
        "../../envs/torch.yaml"
    params:
        source=database_download,
    script:
        "../scripts/download_database.py"


rule build_graph:
    input:
        prepared=PREPARED,
        databases=graph_database_files,
    output:
        graph=GRAPH,
    log:
        "results/logs/graphs/{dataset}/seed{seed}/{variant}.log",
    benchmark:
        "results/benchmarks/graphs/{dataset}/seed{seed}/{variant}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        spec=graph_spec,
    script:
        "../scripts/build_graph.py"


rule graph_stats:
    input:
        graphs=graph_artifacts(),
    output:
        csv=report(
            "results/report/graph_stats.csv",
            caption="../report/graphs.rst",
            category="Gene graphs",
        ),
        md="results/report/graph_stats.md",
    log:
        "results/logs/report/graph_stats.log",
    benchmark:
        "results/benchmarks/report/graph_stats.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/graph_stats.py"
