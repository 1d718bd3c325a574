"""Bring-your-own-data defects (issue 15): each test here failed on the code before its fix.

Stale prepared data after editing a user file, labels-optional datasets, empty splits, test cell
types absent from training, log-scale input, cross-species gene graphs, the quality check over every
task's controls, zero-count cells, config keys named in error messages, and unreadable Geneformer
checkpoints.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

# --------------------------------------------------------------------------------------------------
# 9. Every config key an error message names exists in the schema
# --------------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"^(<[^>]*>|\{[^}]*\})$")


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node


def schema_has_key(schema: dict, key: str, node: dict | None = None) -> bool:
    """Whether a dotted config key (``datasets.<name>.path``; ``<...>`` / ``{...}`` stand for any
    name: any named property or an additional one) is a key of the schema."""
    node = _resolve(schema, schema if node is None else node)
    part, _, rest = key.partition(".")
    props = node.get("properties", {})
    extra = node.get("additionalProperties")
    if _PLACEHOLDER.match(part):
        branches = list(props.values()) + ([extra] if isinstance(extra, dict) else [])
    else:
        branches = [props[part]] if part in props else ([extra] if isinstance(extra, dict) else [])
    return any(not rest or schema_has_key(schema, rest, b) for b in branches)


def _message_strings(tree: ast.AST):
    """String constants and f-strings (with ``{}`` for each formatted value) inside ``raise``
    statements and warning/log calls: the messages a user reads."""

    def text(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):
            return "".join(v.value if isinstance(v, ast.Constant) else "{x}" for v in node.values)
        return None

    def strings(root):
        for node in ast.walk(root):
            t = text(node)
            if t is not None:
                yield t

    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            yield from strings(node.exc)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("warn", "warning", "error"):
            yield from strings(node)


def config_keys_in_messages() -> dict[str, list[str]]:
    """Dotted config keys (starting with a top-level schema key) named in messages: key -> files."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    top = "|".join(sorted(schema["properties"], key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w./<{{-])(?:{top})(?:\.(?:[A-Za-z0-9_]+|<[^>]*>|\{{[^}}]*\}}))+")
    found: dict[str, list[str]] = {}
    files = sorted((REPO / "src" / "scfmbench").rglob("*.py")) + sorted((REPO / "workflow" / "scripts").glob("*.py"))
    for path in files:
        for message in _message_strings(ast.parse(path.read_text())):
            for m in pattern.finditer(message):
                found.setdefault(m.group(0), []).append(str(path.relative_to(REPO)))
    return found


def test_schema_key_resolution():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema_has_key(schema, "datasets.<name>.min_library_size")
    assert schema_has_key(schema, "datasets.{x}.recover_counts")
    assert schema_has_key(schema, "params.scgpt.checkpoint")
    assert not schema_has_key(schema, "imputation.min_library_size")  # the key issue 15 found in an error
    assert not schema_has_key(schema, "datasets.<name>.no_such_key")


def test_every_config_key_named_in_an_error_exists():
    found = config_keys_in_messages()
    assert len(found) >= 15, sorted(found)  # the scan sees the messages (not vacuous)
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    wrong = {k: files for k, files in found.items() if not schema_has_key(schema, k)}
    assert not wrong, f"error messages name config keys the schema does not have: {wrong}"


# --------------------------------------------------------------------------------------------------
# 10. A Geneformer checkpoint that fails weights_only loading is an error naming the file
# --------------------------------------------------------------------------------------------------


class _Payload:
    """Pickles to a call of ``print``: what a malicious checkpoint would do with os.system."""

    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_geneformer_checkpoint_with_pickled_code_names_the_file(tmp_path, capsys):
    import pickle

    from scfmbench import InputError
    from scfmbench.models.pretrained import load_geneformer_checkpoint

    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, hidden_act="relu", max_position_embeddings=16)
    cfg.save_pretrained(tmp_path)
    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(pickle.dumps({"embeddings.word_embeddings.weight": _Payload()}, protocol=2))
    with pytest.raises(InputError) as err:
        load_geneformer_checkpoint(tmp_path, n_classes=2)
    assert str(weights) in str(err.value) and "weights_only" in str(err.value)
    assert "pickled code ran" not in capsys.readouterr().out
