"""YAML to plain values plus a line for every key path, so each recipe error can name file:line.

Only the safe YAML subset is accepted (no tags beyond the core schema); duplicate keys are errors.
Nesting depth and the size with aliases expanded are bounded on the event stream, before any node
is built, so a "billion laughs" or a document nested 60,000 deep fails fast with a line number
instead of eating memory or the stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import RecipeError
from ..yamlguard import YamlTooLarge, check_bounds, yaml

KeyPath = tuple[str | int, ...]
MAX_NODES = 50_000
# Characters (plus one per node) of the recipe with every alias replaced by what it names: four times
# the largest recipe file, far below what would make an image config too large to read back.
MAX_EXPANDED = 4 << 20

try:  # libyaml is much faster; the pure-Python loader gives the same results
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass
class Document:
    path: str
    value: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    # The text of scalars YAML turned into numbers (``ref: 0123`` is an int), for fields that want strings.
    raw: dict[KeyPath, str] = field(default_factory=dict)

    def line(self, key_path: KeyPath) -> int | None:
        """The line of ``key_path``, or of its nearest ancestor that has one."""
        kp = tuple(key_path)
        while True:
            if kp in self.lines:
                return self.lines[kp]
            if not kp:
                return None
            kp = kp[:-1]

    def error(self, key_path: KeyPath, message: str) -> RecipeError:
        return RecipeError(self.path, self.line(key_path), message, format_key_path(key_path) or None)


def format_key_path(key_path: KeyPath) -> str:
    out = ""
    for part in key_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(text: str, path: str) -> Document:
    try:
        check_bounds(text, loader=_Loader, max_expanded=MAX_EXPANDED)
        node = yaml.compose(text, Loader=_Loader)
    except YamlTooLarge as e:
        raise RecipeError(path, e.line, e.reason) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RecipeError(path, line, f"not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise RecipeError(path, None, f"not valid YAML: {e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise RecipeError(path, None, f"not valid YAML: {e}") from None
    doc = Document(path, None)
    if node is None:
        raise RecipeError(path, 1, "the recipe is empty")
    budget = [MAX_NODES]
    doc.value = _convert(node, (), doc, budget)
    return doc


# Only its scalar constructors are used. A constructor alone: a whole SafeLoader would run PyYAML's
# pure-Python reader on "", compiling the pattern ``yamlguard`` leaves for first use.
_constructor = yaml.constructor.SafeConstructor()


def _convert(node: yaml.Node, kp: KeyPath, doc: Document, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise RecipeError(doc.path, node.start_mark.line + 1, "the document is too large (alias expansion?)")
    doc.lines.setdefault(kp, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise RecipeError(doc.path, key_node.start_mark.line + 1, "YAML merge keys ('<<') are not supported")
            if not isinstance(key_node, yaml.ScalarNode):
                raise RecipeError(doc.path, key_node.start_mark.line + 1, "mapping keys must be plain strings")
            key = _scalar(key_node, doc)
            if not isinstance(key, str):
                key = str(key) if isinstance(key, (int, float, bool)) or key is None else key
                if key == "None":
                    key = "null"
            if key in out:
                raise RecipeError(doc.path, key_node.start_mark.line + 1, f"duplicate key {key!r}",
                                  format_key_path((*kp, key)))
            doc.lines[(*kp, key)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, (*kp, key), doc, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*kp, i), doc, budget) for i, item in enumerate(node.value)]
    value = _scalar(node, doc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        doc.raw[kp] = node.value
    return value


def _scalar(node: yaml.Node, doc: Document) -> Any:
    try:
        return _constructor.construct_object(node, deep=True)
    except yaml.YAMLError as e:
        raise RecipeError(doc.path, node.start_mark.line + 1, f"bad value: {getattr(e, 'problem', e)}") from None
    except (ValueError, OverflowError) as e:
        raise RecipeError(doc.path, node.start_mark.line + 1, f"bad value: {e}") from None
