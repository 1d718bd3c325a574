from scfmbench.report.studies import study_defaults


rule report:
    input:
        metrics=metrics_files(),
    output:
        metrics="results/report/metrics.csv",
        annotation_md="results/report/annotation_table.md",
        annotation_csv="results/report/annotation_table.csv",
        annotation_html=report(
            "results/report/annotation_table.html",
            caption="../report/tables.rst",
            category="Annotation",
        ),
        annotation_png=report(
            "results/report/figures/annotation.png",
            caption="../report/annotation.rst",
            category="Annotation",
        ),
        imputation_md="results/report/imputation_table.md",
        imputation_csv="results/report/imputation_table.csv",
        imputation_html=report(
            "results/report/imputation_table.html",
            caption="../report/tables.rst",
            category="Imputation",
        ),
        imputation_png=report(
            "results/report/figures/imputation.png",
            caption="../report/imputation.rst",
            category="Imputation",
        ),
        denoising_md="results/report/denoising_table.md",
        denoising_csv="results/report/denoising_table.csv",
        denoising_html=report(
            "results/report/denoising_table.html",
            caption="../report/tables.rst",
            category="Imputation",
        ),
        denoising_png=report(
            "results/report/figures/denoising.png",
            caption="../report/denoising.rst",
            category="Imputation",
        ),
        doublet_md="results/report/doublet_table.md",
        doublet_csv="results/report/doublet_table.csv",
        doublet_html=report(
            "results/report/doublet_table.html",
            caption="../report/tables.rst",
            category="Annotation",
        ),
        doublet_png=report(
            "results/report/figures/doublet.png",
            caption="../report/doublet.rst",
            category="Annotation",
        ),
        embedding_md="results/report/embedding_table.md",
        embedding_csv="results/report/embedding_table.csv",
        embedding_html=report(
            "results/report/embedding_table.html",
            caption="../report/embedding_table.rst",
            category="Embedding",
        ),
        embedding_png=report(
            "results/report/figures/embedding.png",
            caption="../report/embedding.rst",
            category="Embedding",
        ),
    log:
        "results/logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        significance=significance_config,
    script:
        "../scripts/report.py"


rule report_extras:
    input:
        metrics=rules.report.output.metrics,
        runs=annotation_run_files(),
        curves=[r[-1] for r in curve_records()],
    output:
        paper_md="results/report/paper_table.md",
        paper_csv="results/report/paper_table.csv",
        paper_html=report(
            "results/report/paper_table.html",
            caption="../report/paper_table.rst",
            category="Tables",
        ),
        reported_md="results/report/reported_table.md",
        quality_md="results/report/quality.md",
        quality_csv="results/report/quality.csv",
        quality_html=report(
            "results/report/quality.html",
            caption="../report/quality.rst",
            category="Quality",
        ),
        provenance=report(
            "results/report/provenance.html",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    log:
        "results/logs/report/report_extras.log",
    benchmark:
        "results/benchmarks/report/report_extras.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        expected=expected_records,
        curves=curve_records(),
        config=report_config,
    script:
        "../scripts/report_extras.py"


# The annotation studies beside the main grid: few-shot curves (GenoHoption Fig. 4a,b; datasets
# '{dataset}-fs{fraction}') and diffusion-option sensitivity (Fig. 5; methods '{method}.{option}{value}').
# Always written: with no such runs configured the tables are empty and the figures say so.
# params.defaults: alpha / t / k of each sensitivity method's own run, the default point of its curves.
rule report_studies:
    input:
        metrics=rules.report.output.metrics,
    output:
        fewshot_md="results/report/fewshot_table.md",
        fewshot_csv="results/report/fewshot_table.csv",
        fewshot_html=report(
            "results/report/fewshot_table.html",
            caption="../report/fewshot_table.rst",
            category="Few-shot",
        ),
        fewshot_png=report(
            "results/report/figures/fewshot.png",
            caption="../report/fewshot.rst",
            category="Few-shot",
        ),
        sensitivity_md="results/report/sensitivity_table.md",
        sensitivity_csv="results/report/sensitivity_table.csv",
        sensitivity_html=report(
            "results/report/sensitivity_table.html",
            caption="../report/sensitivity_table.rst",
            category="Sensitivity",
        ),
        sensitivity_png=report(
            "results/report/figures/sensitivity.png",
            caption="../report/sensitivity.rst",
            category="Sensitivity",
        ),
    log:
        "results/logs/report/report_studies.log",
    benchmark:
        "results/benchmarks/report/report_studies.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        defaults=study_defaults(config),
    script:
        "../scripts/report_studies.py"


# Paired significance across seeds (docs/statistics.md "Statistics"; scfmbench.report.significance): each method
# against its references on the seeds both ran, Holm-adjusted per table; average ranks, Friedman and
# Nemenyi across datasets. The summary and paper tables carry the same comparisons' markers.
rule report_significance:
    input:
        metrics=rules.report.output.metrics,
    output:
        csv="results/report/significance.csv",
        md="results/report/significance.md",
        html=report(
            "results/report/significance.html",
            caption="../report/significance.rst",
            category="Significance",
        ),
        ranks_csv="results/report/ranks.csv",
        ranks_md="results/report/ranks.md",
        cd_png=report(
            "results/report/figures/critical_difference.png",
            caption="../report/significance_cd.rst",
            category="Significance",
        ),
    log:
        "results/logs/report/report_significance.log",
    benchmark:
        "results/benchmarks/report/report_significance.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        significance=significance_config,
    script:
        "../scripts/report_significance.py"


# Learning curves (scfmbench.curves): a figure per task with trained runs, a panel per dataset x
# method, a line per seed; the convergence check itself is a section of the quality report.
rule report_curves:
    input:
        curves=lambda w: [r[-1] for r in curve_records() if r[0] == w.task],
    output:
        png=report(
            "results/report/figures/curves_{task}.png",
            caption="../report/curves.rst",
            category="Learning curves",
            subcategory="{task}",
        ),
    log:
        "results/logs/report/curves_{task}.log",
    wildcard_constraints:
        task="annotation|doublet|perturbation|imputation|denoising|pretraining",
    conda:
        "../../envs/report.yaml"
    params:
        curves=lambda w: [r for r in curve_records() if r[0] == w.task],
    script:
        "../scripts/report_curves.py"
