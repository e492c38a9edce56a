"""Option forms generated from config dataclasses, so a new backend (or a new option) appears in the
GUI without GUI code: one input per field (nested dataclasses flattened to `outer.inner`), its
docstring as help, and the values read back into the nested dict that `fields.make_config` and
the other config readers take."""

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any

import gradio as gr

from onefield.errors import UserError


@dataclass(frozen=True)
class Option:
    name: str  # dotted path into the config, e.g. "cleanup.faces"
    kind: str  # bool, int, float, str, ints, floats (comma-separated tuples)
    default: Any
    doc: str
    optional: bool  # None is a value (an empty input)
    choices: tuple[str, ...] | None = None


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field, as tyro reads them), base classes included."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                    isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _kind(annotation: Any) -> tuple[str, bool, tuple[str, ...] | None]:
    """(kind, optional, choices) of a field's type."""
    args = typing.get_args(annotation)
    optional = type(None) in args and (typing.get_origin(annotation) in (typing.Union, types.UnionType))
    if optional:
        (annotation,) = [a for a in args if a is not type(None)]
        args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "str", optional, tuple(str(a) for a in args)
    if origin is tuple:
        return ("ints" if args and args[0] is int else "floats"), optional, None
    for t in (bool, int, float, str):
        if annotation is t:
            return t.__name__, optional, None
    raise TypeError(f"no form input for a field of type {annotation!r}")


def options(cls: type, prefix: str = "", choices: dict[str, tuple[str, ...]] | None = None,
            defaults: Any = None) -> list[Option]:
    """Every option of dataclass `cls`, with the values of `defaults` (an instance; default `cls()`)
    as the form's initial values; `choices` names the allowed values of plain-str fields."""
    hints, docs, found = typing.get_type_hints(cls), field_docs(cls), []
    defaults = cls() if defaults is None else defaults
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            found += options(hints[f.name], f"{prefix}{f.name}.", choices, default)
            continue
        kind, optional, literal = _kind(hints[f.name])
        name = prefix + f.name
        found.append(Option(name, kind, default, docs.get(f.name, ""), optional,
                            literal or (choices or {}).get(name)))
    return found


def component(option: Option, elem_prefix: str) -> gr.components.Component:
    label, info = option.name.replace("_", " "), option.doc or None
    elem_id = f"{elem_prefix}-{option.name.replace('.', '-').replace('_', '-')}"
    if option.kind == "bool":
        return gr.Checkbox(value=option.default, label=label, info=info, elem_id=elem_id)
    if option.choices:
        return gr.Dropdown(list(option.choices), value=option.default, label=label, info=info, elem_id=elem_id)
    if option.kind in ("int", "float") and not option.optional:  # a Number cannot be empty: optional ones are text
        return gr.Number(value=option.default, label=label, info=info, precision=0 if option.kind == "int" else None,
                         elem_id=elem_id)
    value = option.default
    if option.kind in ("ints", "floats"):
        value = "" if value is None else ", ".join(str(v) for v in value)
    return gr.Textbox(value="" if value is None else str(value), label=label, info=info, elem_id=elem_id,
                      placeholder="empty: automatic" if option.optional else None)


def build(opts: list[Option], elem_prefix: str) -> list[gr.components.Component]:
    """The inputs of `opts`, laid out two per row (call inside a Blocks context)."""
    made = []
    for i in range(0, len(opts), 2):
        with gr.Row():
            made += [component(o, elem_prefix) for o in opts[i:i + 2]]
    return made


def _parse(option: Option, value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip() and option.kind != "str"):
        if option.optional:
            return None
        raise UserError(f"option {option.name} needs a value ({option.doc or option.kind})")
    try:
        if option.kind == "bool":
            return bool(value)
        if option.kind == "int":
            if float(value) != int(float(value)):
                raise ValueError("not a whole number")
            return int(float(value))
        if option.kind == "float":
            return float(value)
        if option.kind in ("ints", "floats"):
            cast = int if option.kind == "ints" else float
            return tuple(cast(v) for v in str(value).replace(",", " ").split())
        return str(value)
    except ValueError as error:
        raise UserError(f"option {option.name}: {value!r} is not a valid {option.kind} ({error})") from error


def read(opts: list[Option], values: list[Any]) -> dict[str, Any]:
    """The form's values as a nested dict keyed like the dataclass (`{"cleanup": {"faces": 0}}`)."""
    result: dict[str, Any] = {}
    for option, value in zip(opts, values, strict=True):
        *outer, leaf = option.name.split(".")
        target = result
        for key in outer:
            target = target.setdefault(key, {})
        target[leaf] = _parse(option, value)
    return result
