"""Hugging Face's Longformer and BigBird attention modules, without importing transformers' model stack.

Importing ``transformers.models.longformer.modeling_longformer`` (or ``big_bird``) imports
``transformers.modeling_utils`` and with it generation, hub, chat templates, ``torch._dynamo``,
``torch.distributed.tensor``, ``scipy.optimize``, ... (transformers 5.x): about 3 s of CPU in every
fresh process, while the classes the profile measures (``LongformerSelfAttention``,
``BigBirdBlockSparseAttention`` and ``BigBirdModel.create_masks_for_block_sparse_attn``) read
only ``math``, ``numpy`` and ``torch``.

:func:`load` therefore compiles just those definitions from the installed module's own source
file (the same code, not a copy; annotations dropped, they are never evaluated at run time by
these classes), in a namespace holding ``math``, ``np``, ``nn`` and ``torch``, after checking
with :mod:`symtable` that every global name they read is in that namespace. Anything unexpected
(transformers not installed, the file or a definition not found, another global name, a
decorator other than ``staticmethod``) falls back to the ordinary import, so a new transformers
version costs time, never correctness. The configurations are plain namespaces with the
attributes these classes read (:func:`longformer_config`, :func:`bigbird_config`; the values of
``LongformerConfig`` / ``BigBirdConfig`` for the profile's settings).
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import symtable
from functools import cache
from pathlib import Path
from types import SimpleNamespace

LONGFORMER = "transformers.models.longformer.modeling_longformer"
BIGBIRD = "transformers.models.big_bird.modeling_big_bird"


def _namespace(module: str) -> dict:
    import math

    import numpy as np
    import torch
    from torch import nn

    return {"__name__": module, "__builtins__": builtins, "math": math, "np": np, "torch": torch, "nn": nn}


def _source_file(module: str) -> Path | None:
    """The installed ``transformers`` submodule's .py file, found without importing transformers."""
    spec = importlib.util.find_spec("transformers")  # a top-level name: located, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*module.split(".")[1:]).with_suffix(".py")
    return path if path.is_file() else None


class _DropAnnotations(ast.NodeTransformer):
    def visit_arg(self, node):
        node.annotation = None
        return node

    def _function(self, node):
        node.returns = None
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function


def _globals_read(source: str) -> set[str]:
    """Global (module-level or builtin) names read anywhere in ``source``'s nested scopes."""
    names: set[str] = set()

    def walk(table):
        names.update(sym.get_name() for sym in table.get_symbols() if sym.is_referenced() and sym.is_global())
        for child in table.get_children():
            walk(child)

    walk(symtable.symtable(source, "<narrow>", "exec"))
    return names


@cache
def _narrow(module: str, names: tuple[str, ...]) -> dict | None:
    """``names`` (``Class`` or ``Class.staticmethod``) compiled from ``module``'s source, or None."""
    path = _source_file(module)
    if path is None:
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    nodes = []
    for name in names:
        cls, _, member = name.partition(".")
        node = top.get(cls)
        if node is not None and member:
            node = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == member), None)
            if node is None or [ast.unparse(d) for d in node.decorator_list] != ["staticmethod"]:
                return None
            node.decorator_list = []  # a plain function, as the staticmethod is called
        if node is None:
            return None
        nodes.append(_DropAnnotations().visit(node))
    code = ast.Module(body=nodes, type_ignores=[])
    namespace = _namespace(module)
    defined = {node.name for node in nodes}
    if not _globals_read(ast.unparse(code)) <= set(namespace) | defined | set(dir(builtins)):
        return None
    exec(compile(code, str(path), "exec"), namespace)  # noqa: S102 -- transformers' own installed source
    return {name: namespace[name.partition(".")[2] or name] for name in names}


def load(module: str, *names: str, narrow: bool = True) -> list:
    """The definitions ``names`` of the transformers ``module``: compiled narrowly from its source
    (see the module docstring) or, when that is not possible or ``narrow`` is False, imported."""
    got = _narrow(module, tuple(names)) if narrow else None
    if got is not None:
        return [got[name] for name in names]
    imported = importlib.import_module(module)
    out = []
    for name in names:
        obj = imported
        for part in name.split("."):
            obj = getattr(obj, part)
        out.append(obj)
    return out


def longformer_config(hidden_size: int, num_attention_heads: int, *, attention_window: int = 64) -> SimpleNamespace:
    """What ``LongformerSelfAttention`` reads of a ``LongformerConfig`` (dropout off)."""
    return SimpleNamespace(
        hidden_size=hidden_size,
        num_attention_heads=num_attention_heads,
        attention_window=[attention_window],
        attention_probs_dropout_prob=0.0,
    )


def bigbird_config(
    hidden_size: int,
    num_attention_heads: int,
    *,
    block_size: int = 64,
    num_random_blocks: int = 3,
    max_position_embeddings: int = 4096,
) -> SimpleNamespace:
    """What ``BigBirdBlockSparseAttention`` reads of a ``BigBirdConfig`` (its default bias)."""
    return SimpleNamespace(
        hidden_size=hidden_size,
        num_attention_heads=num_attention_heads,
        block_size=block_size,
        num_random_blocks=num_random_blocks,
        max_position_embeddings=max_position_embeddings,
        use_bias=True,
        attention_type="block_sparse",
    )
