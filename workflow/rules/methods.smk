# Methods added as rule files: every workflow/rules/methods/<id>.smk is included here; listing <id>
# under annotation.methods or imputation.methods in the config runs it (docs/extending.md, "Adding a baseline").
for _rule_file in sorted(METHOD_RULE_DIR.glob("*.smk")):

    include: str(_rule_file)
