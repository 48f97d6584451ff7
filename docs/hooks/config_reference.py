"""MkDocs hook: the configuration reference, rendered from the pydantic models in app/config.py.

A page that contains the marker below gets, in its place, one section per field of `AppConfig`:
every key with its type, constraints, default and the comment or description the code gives
it. Nothing here names a section or a key, so a renamed or added section regenerates as is.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import sys
import textwrap
import tokenize
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

MARKER = "<!-- mlsys:config-reference -->"
ROOT = Path(__file__).resolve().parents[2]
_CONSTRAINTS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "min length"}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from app.config import ENV_PREFIX, AppConfig

    return markdown.replace(MARKER, render(AppConfig, env_prefix=ENV_PREFIX))


def render(root: type[BaseModel], *, env_prefix: str) -> str:
    out = [overview(root)]
    for name, field in root.model_fields.items():
        model = _model_of(field.annotation)
        if model is None:  # a top-level scalar: listed in the overview's table only
            continue
        out.append(section(model, [name], level=2, env_prefix=env_prefix, required=field.is_required()))
    return "\n\n".join(out) + "\n"


def overview(root: type[BaseModel]) -> str:
    rows = ["| section | what it configures |", "|---|---|"]
    for name, field in root.model_fields.items():
        model = _model_of(field.annotation)
        about = _first_sentence(_doc(model)) if model else ""
        about = about or _comments(root).get(name, "") or field.description or ""
        if not about and model:  # no docstring to quote: name its keys
            keys = [f"`{k}`" for k in model.model_fields]
            about = ", ".join(keys[:6]) + (", …" if len(keys) > 6 else "")
        key = f"[`{name}`](#{_anchor([name])})" if model else f"`{name}`"
        rows.append(f"| {key} | {_cell(about)} |")
    return "\n".join(rows)


def section(model: type[BaseModel], path: list[str], *, level: int, env_prefix: str, required: bool) -> str:
    title = ".".join(path)
    out = [f"{'#' * level} `{title}` {{ #{_anchor(path)} }}"]
    doc = _doc(model)
    if doc:
        out.append(doc)
    if required:
        out.append("This section is required.")
    comments = _comments(model)
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    nested: list[tuple[type[BaseModel], list[str]]] = []
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            nested.append((sub, [*path, name]))
        elif (item := _mapped_model(field.annotation)) is not None:
            nested.append((item, [*path, name, "<name>"]))
        about = field.description or comments.get(name, "")
        rows.append(
            f"| `{name}` | {_cell(_type(field.annotation, field.metadata))} | "
            f"{_cell(_default(field, [*path, name]))} | {_cell(about)} |"
        )
    if len(rows) > 2:
        out.append("\n".join(rows))
        leaves = [n for n, f in model.model_fields.items() if _model_of(f.annotation) is None]
        env = "__".join([*path, (leaves or list(model.model_fields))[0]]).upper().replace("<NAME>", "NAME")
        out.append(f"From the environment: `{env_prefix}{env}=...` (the value is read as YAML).")
    paths = _paths(model)
    if paths:
        out.append("Paths under it:\n\n" + "\n".join(paths))
    for sub, sub_path in nested:
        out.append(section(sub, sub_path, level=min(level + 1, 4), env_prefix=env_prefix, required=False))
    return "\n\n".join(out)


# Types, defaults and text


def _model_of(tp: Any) -> type[BaseModel] | None:
    """The section model a field holds, also when it is optional."""
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        return tp
    if _is_union(tp):
        models = [m for a in typing.get_args(tp) if (m := _model_of(a)) is not None]
        return models[0] if len(models) == 1 else None
    return None


def _mapped_model(tp: Any) -> type[BaseModel] | None:
    """The model of a `dict[str, Model]` field (one entry per name the user chooses)."""
    if typing.get_origin(tp) is dict:
        return _model_of(typing.get_args(tp)[1])
    return _mapped_model(typing.get_args(tp)[0]) if _is_union(tp) else None


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _type(tp: Any, metadata: list[Any] = ()) -> str:
    limits = _limits(metadata)
    return f"{_type_name(tp)} ({limits})" if limits else _type_name(tp)


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin is typing.Literal:
        return " | ".join(f"`{json.dumps(a)}`" for a in args)
    if origin is typing.Annotated:
        return _type(args[0], list(args[1:]))
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type_name(args[0])} → {_type_name(args[1])}" if args else "map"
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        return "section"
    return getattr(tp, "__name__", str(tp))


def _limits(metadata: list[Any]) -> str:
    found = []
    for item in metadata:
        inner = getattr(item, "metadata", None)  # a FieldInfo inside Annotated[...]
        for m in inner if isinstance(inner, list) else [item]:
            for attr, sign in _CONSTRAINTS.items():
                value = getattr(m, attr, None)
                if value is not None and not isinstance(value, type):
                    found.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
    return ", ".join(found)


def _default(field: Any, path: list[str]) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return f"[see below](#{_anchor(path)})"
    if isinstance(value, str):
        return f"`{value}`"
    try:
        return f"`{json.dumps(value)}`"
    except TypeError:
        return f"`{value}`"


def _doc(model: type[BaseModel] | None) -> str:
    doc = model.__dict__.get("__doc__") if model else None
    return inspect.cleandoc(doc) if doc else ""


def _first_sentence(text: str) -> str:
    para = " ".join(text.split("\n\n", 1)[0].split())
    return para.split(". ", 1)[0].rstrip(".") if para else ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _anchor(path: list[str]) -> str:
    return "-".join(p.strip("<>") for p in path).lower().replace("_", "-")


# The comments beside the code


@cache
def _class_source(model: type) -> tuple[ast.ClassDef, list[str], dict[int, str]] | None:
    """The class's syntax tree, its lines, and its comments by line (1-based, in the class)."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return None
    tree = ast.parse(source).body[0]
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    return tree, source.splitlines(), comments


def _comments(model: type) -> dict[str, str]:
    """Field name -> the comment block just above it plus the comment at its end."""
    found = _class_source(model)
    if found is None:
        return {}
    tree, lines, comments = found
    out = {}
    for node in tree.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line >= 1 and line in comments and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        beside = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        text = " ".join(c for c in [*above, *beside] if c and not c.startswith("noqa"))
        out[node.target.id] = text
    return out


def _paths(model: type[BaseModel]) -> list[str]:
    """Properties that return a Path: the layout a section spells, shown for its defaults."""
    found = _class_source(model)
    try:
        instance = model()
    except Exception:  # a section without defaults has no layout to show
        return []
    roots = {v: k for k, v in instance.model_dump().items() if isinstance(v, str) and v}
    out = []
    for name, prop in vars(model).items():
        if name.startswith("_") or not isinstance(prop, property):
            continue
        if inspect.signature(prop.fget).return_annotation not in ("Path", Path):
            continue
        value = str(getattr(instance, name))
        root = next((r for r in roots if value.startswith(r)), None)
        if root is not None:  # shown under its key, not this machine's absolute path
            value = f"<{roots[root]}>{value[len(root) :]}"
        note = ""
        if found is not None:
            tree, _, comments = found
            node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
            note = comments.get(node.lineno, "") if node else ""
        out.append(f"- `{name}`: `{value}`" + (f" — {note}" if note else ""))
    return out
