# scfmbench: the workflow's table of contents. Stages live in workflow/rules/, logic in src/scfmbench.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/graphs.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/impute.smk"
include: "workflow/rules/methods.smk"
include: "workflow/rules/schyena.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/perturb.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
