"""Documentation: README size and links, docs/ pages, config/README.md in sync with the schema, the
README's generated results block, and a caption for every report() of the rules."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from scfmbench import config_docs
from scfmbench.report import readme

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PAGES = sorted((REPO / "docs").glob("*.md"))


# --- README and docs/ ------------------------------------------------------------------------------
def test_readme_is_short_and_keeps_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    # CI runs exactly the README's test command (.ci/run).
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    two = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    assert f"```bash\n{ci}\n```" in two
    for section in (
        "## Configurations",
        "## What the default computes",
        "## Results at a glance",
        "## Adding a method",
        "## Where to read more",
    ):
        assert section in text, section


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, fence = set(), False
    for line in path.read_text().splitlines():
        fence ^= line.startswith("```")
        if not fence and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def _links(path: Path):
    fence = False
    for line in path.read_text().splitlines():
        fence ^= line.startswith("```")
        if not fence:
            yield from re.findall(r"\]\(([^)\s]+)\)", line)


@pytest.mark.parametrize(
    "page", [REPO / "README.md", REPO / "config" / "README.md", *PAGES], ids=lambda p: str(p.relative_to(REPO))
)
def test_every_relative_link_resolves(page):
    for link in _links(page):
        if re.match(r"[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.relative_to(REPO)}: link {link} points at nothing"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{page.relative_to(REPO)}: no heading #{anchor} in {target or page.name}"


def test_every_docs_page_is_listed_in_the_index_and_the_readme():
    index = (REPO / "docs" / "README.md").read_text()
    main = (REPO / "README.md").read_text()
    for page in PAGES:
        if page.name == "README.md":
            continue
        assert f"]({page.name})" in index, f"docs/README.md does not list {page.name}"
        assert f"](docs/{page.name})" in main, f"README.md does not link docs/{page.name}"


def test_docs_show_the_examples_the_tests_run():
    """docs/extending.md's worked examples are the rule files tests/test_workflow.py and
    tests/test_imputation_workflow.py run; docs/perturbation.md's own-screen blocks parse."""
    from test_imputation_workflow import GENE_MEAN_RULE
    from test_perturbation_own import readme_blocks
    from test_workflow import PERTURB_RULE, TOY_RULE

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "extending.md").read_text(), re.S)
    for rule in (TOY_RULE, GENE_MEAN_RULE, PERTURB_RULE):
        assert rule.strip() in [b.strip() for b in blocks], rule.splitlines()[1]
    python, config = readme_blocks()
    assert "def " in python or "import" in python
    assert config["perturbation"]["datasets"], config


def test_no_pointer_to_a_readme_section_that_moved():
    """Comments, messages and descriptions name the docs page, not a README section that is gone."""
    sections = set(re.findall(r"^## (.+)$", (REPO / "README.md").read_text(), re.M))
    stale = []
    for path in [
        *REPO.glob("config/*.yaml"),
        SCHEMA,
        *REPO.glob("workflow/**/*.smk"),
        *REPO.glob("workflow/report/*.rst"),
        *REPO.glob("src/**/*.py"),
    ]:
        for name in re.findall(r"README,? \\?[\"']([^\"'\\]+)\\?[\"']", path.read_text()):
            if name not in sections:
                stale.append(f"{path.relative_to(REPO)}: README {name!r}")
    assert not stale, stale


# --- config/README.md ------------------------------------------------------------------------------
def test_config_readme_is_in_sync_with_the_schema():
    expected = config_docs.render(yaml.safe_load(SCHEMA.read_text()))
    assert (REPO / "config" / "README.md").read_text() == expected, "run `python -m scfmbench.config_docs`"


def _keys(node, schema, path=""):
    """Every key path of the schema, walked independently of config_docs."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    for key, child in node.get("properties", {}).items():
        sub = f"{path}.{key}" if path else key
        yield sub
        yield from _keys(child, schema, sub)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and ("$ref" in extra or "properties" in extra):
        yield from _keys(extra, schema, f"{path}.<name>")
    if isinstance(node.get("items"), dict):
        yield from _keys(node["items"], schema, f"{path}[]")


def test_config_readme_documents_every_key_with_its_default():
    schema = yaml.safe_load(SCHEMA.read_text())
    text = (REPO / "config" / "README.md").read_text()
    top = set(schema["properties"])
    for key in _keys(schema, schema):
        if key in top:
            assert f"## `{key}`" in text, key
        else:
            assert f"| `{key}` |" in text, key
    # one default spelled out: split.test_seed's, read from the schema
    default = schema["properties"]["split"]["properties"]["test_seed"]["default"]
    assert re.search(rf"\| `split.test_seed` \| [^|]+ \| `{default}` \|", text)


def test_config_docs_renders_types_defaults_and_nesting():
    schema = {
        "$defs": {
            "entry": {
                "type": "object",
                "required": ["kind"],
                "properties": {
                    "kind": {"enum": ["a", "b"], "description": "Which | kind."},
                    "size": {"type": ["integer", "null"], "default": None, "description": "How big."},
                },
            }
        },
        "properties": {
            "things": {
                "type": "object",
                "default": {},
                "description": "Named things.",
                "additionalProperties": {"$ref": "#/$defs/entry"},
            },
            "seeds": {"type": "array", "items": {"type": "integer"}, "default": [0, 1], "description": "Seeds."},
        },
    }
    text = config_docs.render(schema)
    body = text[len(config_docs.INTRO) :]
    assert body == textwrap.dedent("""
        ## `things`

        Named things.

        Type: object, default `{}`.

        | key | type | default | description |
        | --- | --- | --- | --- |
        | `things.<name>.kind` | one of a, b | required | Which \\| kind. |
        | `things.<name>.size` | integer or null | `null` | How big. |

        ## `seeds`

        Seeds.

        Type: list of integer, default `[0, 1]`.
        """)


def test_config_docs_check_flags_a_stale_file(tmp_path, capsys):
    out = tmp_path / "README.md"
    assert config_docs.main(["--schema", str(SCHEMA), "--output", str(out)]) == 0
    assert config_docs.main(["--schema", str(SCHEMA), "--output", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("Number of cells.", "Number of cells!"))
    assert config_docs.main(["--schema", str(SCHEMA), "--output", str(out), "--check"]) == 1
    assert "python -m scfmbench.config_docs" in capsys.readouterr().err


# --- README "Results at a glance" ------------------------------------------------------------------
def _results(tmp_path: Path) -> Path:
    """A results/report of the real files' formats, two seeds' worth of numbers."""
    d = tmp_path / "report"
    d.mkdir()
    (d / "annotation_table.csv").write_text(
        "method,dataset,metric,mean,std,n,best\n"
        "logreg,pbmc68k,accuracy,0.8,0.01,2,True\n"
        "logreg,pbmc68k,macro_f1,0.64123,0.0174,2,True\n"
        "majority,pbmc68k,macro_f1,0.05,0.0,2,False\n"
        "logreg,synthetic,macro_f1,0.9,0.003,2,True\n"
    )
    (d / "perturbation_table.csv").write_text(
        "dataset,subgroup,metric,method,mean,sd,n\n"
        "screen,all,pearson_delta,train_mean,0.147,0.018,2\n"
        "screen,combo_seen0,pearson_delta,train_mean,0.5,0.1,2\n"
        "screen,all,mse_de,train_mean,1.0,0.1,2\n"
        "screen,all,pearson_delta,oracle,0.806,,1\n"
    )
    (d / "imputation_table.csv").write_text(
        "method,dataset,metric,mean,std,n,best\n"
        "none,synthetic,mse,13.379,0.0,2,False\n"
        "none,synthetic,pearson,0.5,0.0,2,False\n"
    )
    (d / "denoising_table.csv").write_text(
        "method,dataset,metric,mean,std,n,best\n"
        "none,synthetic,mse_sqrt,0.1496,0.001,2,False\n"
        "none,synthetic,poisson,0.1213,0.003,2,False\n"
        "true_rate,synthetic,poisson,-0.013,0.001,2,True\n"
    )
    (d / "quality.md").write_text("# Quality check\n\n3 problem(s) found:\n\n| check |\n|---|\n| below control |\n")
    (d / "provenance.html").write_text(
        "<html><body><pre># Provenance\n\n- git commit: `abc123`\n\n## Configuration\n\n```yaml\nseeds:\n- 0\n- "
        "1\n```\n</pre></body></html>"
    )
    return d


README_TEXT = "# x\n\nbefore\n\n<!-- results:begin -->\nold numbers\n<!-- results:end -->\n\nafter\n"

EXPECTED_BLOCK = """\
Produced by `snakemake` at commit `abc123`, seeds 0, 1 (`results/report/provenance.html`); \
copied here by `python -m scfmbench.report.readme`.

**Cell-type annotation**, macro F1 on the test cells (mean ± sd over seeds; `annotation_table.md`):

| method | pbmc68k | synthetic |
|:---|---:|---:|
| logreg | 0.641 ± 0.017 | 0.900 ± 0.003 |
| majority | 0.050 ± 0.000 | – |

**Perturbation prediction**, `pearson_delta` over all test conditions (mean ± sd over seeds; `perturbation_table.md`):

| method | screen |
|:---|---:|
| train_mean | 0.147 ± 0.018 |
| oracle | 0.806 |

**Imputation and denoising**, lower is better (mean ± sd over seeds; `imputation_table.md`, `denoising_table.md`):

| method | imputation mse (synthetic) | denoising mse_sqrt (synthetic) | denoising poisson (synthetic) |
|:---|---:|---:|---:|
| none | 13.379 ± 0.000 | 0.150 ± 0.001 | 0.121 ± 0.003 |
| true_rate | – | – | -0.013 ± 0.001 |

**Quality check** (`quality.md`): 3 problem(s) found."""


def test_results_block_is_replaced_exactly_and_nothing_else(tmp_path):
    results = _results(tmp_path)
    path = tmp_path / "README.md"
    path.write_text(README_TEXT)
    assert readme.main(["--results", str(results), "--readme", str(path), "--command", "snakemake"]) == 0
    assert path.read_text() == README_TEXT.replace("old numbers", EXPECTED_BLOCK)
    # idempotent: a second run changes nothing
    assert readme.main(["--results", str(results), "--readme", str(path), "--command", "snakemake"]) == 0
    assert path.read_text() == README_TEXT.replace("old numbers", EXPECTED_BLOCK)


@pytest.mark.parametrize(
    "name", ["annotation_table.csv", "perturbation_table.csv", "denoising_table.csv", "quality.md", "provenance.html"]
)
def test_a_missing_table_names_the_file_and_the_command(tmp_path, capsys, name):
    results = _results(tmp_path)
    (results / name).unlink()
    path = tmp_path / "README.md"
    path.write_text(README_TEXT)
    assert readme.main(["--results", str(results), "--readme", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(results / name) in err and f"snakemake {results / name}" in err
    assert path.read_text() == README_TEXT


def test_readme_without_markers_is_an_error(tmp_path):
    with pytest.raises(readme.ReadmeError, match="results:begin"):
        readme.replace_block("no markers here\n", "x")
    with pytest.raises(readme.ReadmeError, match="results:begin"):
        readme.replace_block(f"{readme.END}\n{readme.BEGIN}\n", "x")


def test_the_repository_readme_has_the_markers():
    text = (REPO / "README.md").read_text()
    assert text.count(readme.BEGIN) == 1 and text.count(readme.END) == 1


# --- report captions --------------------------------------------------------------------------------
def _report_calls(path: Path):
    """Each ``report(...)`` call of a rule file, with its line number (parentheses matched)."""
    text = path.read_text()
    for match in re.finditer(r"(?<![\w.])report\(", text):
        i, depth = match.end(), 1
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield text[: match.start()].count("\n") + 1, text[match.start() : i]


RULE_FILES = sorted((REPO / "workflow" / "rules").rglob("*.smk"))


def test_rule_files_have_report_calls():
    assert sum(len(list(_report_calls(p))) for p in RULE_FILES) >= 20


@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.name)
def test_every_report_output_has_an_existing_caption(rules):
    for line, call in _report_calls(rules):
        caption = re.search(r"caption\s*=\s*[\"']([^\"']+)[\"']", call)
        assert caption, f"{rules.name}:{line}: report() without caption=: {call[:80]}"
        path = (rules.parent / caption.group(1)).resolve()
        assert path.is_file() and path.parent == (REPO / "workflow" / "report").resolve(), (
            f"{rules.name}:{line}: caption {caption.group(1)} is not a file in workflow/report/"
        )
        assert path.read_text().strip(), f"{path} is empty"
