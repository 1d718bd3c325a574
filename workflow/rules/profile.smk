# Memory and speed across sequence lengths: one job per point, then the profile report.
# Each point runs in a fresh process under the configured memory cap and time-out; out-of-memory
# and time-outs are result rows (status oom / timeout), so these jobs fail only on a bug.


rule profile_point:
    output:
        csv=PROFILE_POINT,
    log:
        "results/logs/profile/{mechanism}/L{length}_B{batch}_{mode}.log",
    benchmark:
        "results/benchmarks/profile/{mechanism}/L{length}_B{batch}_{mode}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=gpu_request,
    params:
        settings=profile_settings,
    script:
        "../scripts/profile_point.py"


rule profile_report:
    input:
        points=profile_points(),
    output:
        csv=report(
            "results/report/profile.csv",
            caption="../report/profile_points.rst",
            category="Profile",
        ),
        scaling_csv=report(
            "results/report/profile_scaling.csv",
            caption="../report/profile_scaling.rst",
            category="Profile",
        ),
        scaling_md="results/report/profile_scaling.md",
        time_png=report(
            "results/report/figures/profile_time.png",
            caption="../report/profile_time.rst",
            category="Profile",
        ),
        memory_png=report(
            "results/report/figures/profile_memory.png",
            caption="../report/profile_memory.rst",
            category="Profile",
        ),
    log:
        "results/logs/report/profile.log",
    benchmark:
        "results/benchmarks/report/profile.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/profile_report.py"
