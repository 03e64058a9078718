"""A small strict-model machine: frozen dataclasses described by type hints become both a validating
converter (YAML values -> model, errors naming file:line and key path) and a JSON Schema.

Field metadata: ``key`` (the YAML spelling, default camelCase of the field name), ``doc``, and for
strings a ``Spec`` in ``Annotated`` (durations, paths, image references, names) that validates them.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from ..oci.frozen import FrozenDict
from .yamlsrc import Document, KeyPath


@dataclass(frozen=True, eq=False)  # identity-hashed: it sits inside Annotated[...] hints
class Spec:
    """Extra validation for a scalar; ``check`` returns the converted value or raises ValueError."""

    name: str
    schema: dict[str, Any]
    check: Callable[[Any], Any]


def yaml_key(f: dataclasses.Field[Any]) -> str:
    if "key" in f.metadata:
        return str(f.metadata["key"])
    head, *rest = f.name.rstrip("_").split("_")
    return head + "".join(p.title() for p in rest)


def field(*, doc: str, key: str | None = None, default: Any = dataclasses.MISSING,
          default_factory: Any = dataclasses.MISSING) -> Any:
    """A model field. ``doc`` is required: it is the key's description in ``regfp schema``."""
    if not doc.strip():
        raise TypeError("every recipe key needs a description (doc=...)")
    meta: dict[str, Any] = {"doc": doc}
    if key is not None:
        meta["key"] = key
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.cache  # resolving the string annotations costs ~1 ms a class, and each recipe load asks per section
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


class Converter:
    """Converts a YAML document into a model, raising the document's RecipeError on the first problem."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def convert(self, tp: Any, value: Any, kp: KeyPath) -> Any:
        origin = get_origin(tp)
        if origin is Annotated:
            base, *extras = get_args(tp)
            out = self.convert(base, value, kp)
            for spec in extras:
                if isinstance(spec, Spec):
                    try:
                        out = spec.check(out)
                    except ValueError as e:
                        raise self.doc.error(kp, str(e)) from None
            return out
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if value is None and len(args) != len(get_args(tp)):
                return None
            if len(args) == 1:
                return self.convert(args[0], value, kp)
            return self._union(args, value, kp)
        if origin is Literal:
            allowed = get_args(tp)
            if value not in allowed or type(value) is not type(allowed[0]):
                raise self.doc.error(kp, f"must be one of {', '.join(map(repr, allowed))}, not {value!r}")
            return value
        if origin in (list, tuple):
            (item,) = get_args(tp)[:1]
            if not isinstance(value, list):
                raise self.doc.error(kp, f"must be a list, not {_kind(value)}")
            return tuple(self.convert(item, v, (*kp, i)) for i, v in enumerate(value))
        if origin in (dict, FrozenDict) or tp is FrozenDict:
            if not isinstance(value, dict):
                raise self.doc.error(kp, f"must be a mapping, not {_kind(value)}")
            key_type, item = get_args(tp) if get_args(tp) else (str, Any)
            return FrozenDict({self._key(key_type, k, (*kp, k)): self.convert(item, v, (*kp, k))
                               for k, v in value.items()})
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self.model(tp, value, kp)
        if tp is Any:
            return value
        if tp is str:
            if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
                raise self.doc.error(kp, f"must be a string, not {_kind(value)}")
            if not isinstance(value, str):
                if isinstance(value, (int, float)) and kp in self.doc.raw:
                    return self.doc.raw[kp]  # YAML read 8080 or 0123 as a number; the text is meant
                raise self.doc.error(kp, f"must be a string, not {_kind(value)}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.doc.error(kp, f"must be an integer, not {_kind(value)}")
            return value
        if tp is bool:
            if not isinstance(value, bool):
                raise self.doc.error(kp, f"must be true or false, not {_kind(value)}")
            return value
        raise TypeError(f"unsupported model type {tp!r}")  # a bug in the model, not in the recipe

    def _key(self, key_type: Any, key: Any, kp: KeyPath) -> str:
        """A mapping key, checked like a value when the model gives keys their own type (env names)."""
        text = str(key)
        return str(self.convert(key_type, text, kp)) if get_origin(key_type) is Annotated else text

    def _union(self, args: list[Any], value: Any, kp: KeyPath) -> Any:
        # Unions in the model are "scalar or mapping" (e.g. a base given as a string or an object).
        for arg in args:
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return self.convert(arg, value, kp)
            if get_origin(arg) in (list, tuple) and isinstance(value, list):
                return self.convert(arg, value, kp)
            if get_origin(arg) in (dict, FrozenDict) and isinstance(value, dict):
                return self.convert(arg, value, kp)
            if _scalar_type(arg) and not isinstance(value, (dict, list)):
                return self.convert(arg, value, kp)
        raise self.doc.error(kp, f"has the wrong shape ({_kind(value)}); expected {_describe(args)}")

    def model(self, cls: type, value: Any, kp: KeyPath) -> Any:
        if not isinstance(value, dict):
            raise self.doc.error(kp, f"must be a mapping, not {_kind(value)}")
        fields = {yaml_key(f): f for f in dataclasses.fields(cls)}
        hints = _hints(cls)
        unknown = [k for k in value if k not in fields]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            if not close:
                lowered = {k.lower(): k for k in fields}
                close = [lowered[str(key).lower()]] if str(key).lower() in lowered else []
            hint = f"; did you mean {close[0]!r}?" if close else f" (known keys: {', '.join(fields)})"
            where = f" in {_section(kp)}" if kp else ""
            raise self.doc.error((*kp, key), f"unknown key {key!r}{where}{hint}")
        kwargs = {}
        for key, f in fields.items():
            if key in value:
                kwargs[f.name] = self.convert(hints[f.name], value[key], (*kp, key))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                where = f" in {_section(kp)}" if kp else ""
                raise self.doc.error(kp, f"missing required key {key!r}{where}")
        try:
            return cls(**kwargs)
        except ValueError as e:  # cross-field checks in __post_init__
            raise self.doc.error(kp, str(e)) from None


def _section(kp: KeyPath) -> str:
    from .yamlsrc import format_key_path

    return repr(format_key_path(kp))


def _scalar_type(tp: Any) -> bool:
    if get_origin(tp) is Annotated:
        return _scalar_type(get_args(tp)[0])
    return tp in (str, int, bool) or get_origin(tp) is Literal


def _describe(args: list[Any]) -> str:
    names = []
    for a in args:
        if dataclasses.is_dataclass(a) or get_origin(a) in (dict, FrozenDict):
            names.append("a mapping")
        elif get_origin(a) in (list, tuple):
            names.append("a list")
        else:
            names.append("a string")
    return " or ".join(dict.fromkeys(names))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", bool: "a boolean", int: "an integer", float: "a number",
            str: "a string"}.get(type(value), type(value).__name__)


# ---- JSON Schema -----------------------------------------------------------------------------------

def json_schema(root: type, *, title: str, schema_id: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    body = _schema_of(root, defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, "title": title,
            **body, "$defs": dict(sorted(defs.items()))}


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extras = get_args(tp)
        out = dict(_schema_of(base, defs))
        for spec in extras:
            if isinstance(spec, Spec):
                out.update(spec.schema)
        return out
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _schema_of(args[0], defs)
        return {"oneOf": [_schema_of(a, defs) for a in args]}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (list, tuple):
        return {"type": "array", "items": _schema_of(get_args(tp)[0], defs)}
    if origin in (dict, FrozenDict) or tp is FrozenDict:
        key_type, item = get_args(tp) if get_args(tp) else (str, Any)
        out = {"type": "object", "additionalProperties": _schema_of(item, defs)}
        if get_origin(key_type) is Annotated:
            out["propertyNames"] = _schema_of(key_type, defs)
        return out
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            hints = _hints(tp)
            props: dict[str, Any] = {}
            required = []
            for f in dataclasses.fields(tp):
                key = yaml_key(f)
                prop = dict(_schema_of(hints[f.name], defs))
                if f.metadata.get("doc"):
                    prop["description"] = f.metadata["doc"]
                if f.default is not dataclasses.MISSING and _jsonable(f.default):
                    prop["default"] = f.default
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    required.append(key)
                props[key] = prop
            entry: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
            entry["description"] = _class_doc(tp)
            if required:
                entry["required"] = required
            defs[name] = entry
        return {"$ref": f"#/$defs/{name}"}
    if tp is str:
        return {"type": "string"}
    if tp is int:
        return {"type": "integer"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is Any:
        return {}
    raise TypeError(f"unsupported model type {tp!r}")


def _class_doc(cls: Any) -> str:
    """A model class's own docstring. dataclass() invents one from the signature when a class has none
    ("Debug(tools: 'str | None' = None, ...)"), which is no description: a model bug, caught here."""
    doc = " ".join((cls.__doc__ or "").split())
    if not doc or doc.startswith(f"{cls.__name__}("):
        raise TypeError(f"recipe model class {cls.__name__} needs a docstring (it describes the section)")
    return doc


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, bool))


def pattern_spec(name: str, regex: str, message: str) -> Spec:
    compiled = re.compile(regex)

    def check(value: Any) -> Any:
        if not compiled.fullmatch(value):
            raise ValueError(message.format(value=value))
        return value

    return Spec(name, {"pattern": f"^{regex}$"}, check)


__all__ = ["Converter", "Spec", "field", "json_schema", "pattern_spec"]
