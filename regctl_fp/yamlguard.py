"""Bounds on a YAML document, checked on its event stream before any node or object is built.

PyYAML's composer and constructor recurse once per nesting level: a document nested a thousand deep
is a RecursionError, and sixty thousand deep overflows the C stack of libyaml's binding (SIGSEGV).
Aliases are shared when composed but copied by whatever walks the result, so a small document can
stand for a huge one. The event stream is flat, so one pass over it measures both, cheaply and safely.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

# PyYAML's pure-Python reader compiles this at import: a character class over all of Unicode, ~9 ms,
# the costliest line of regfp's start-up after typer. regfp parses with libyaml (CSafeLoader), which
# never runs it, so it is compiled on first use instead (see ``_import_yaml``).
_NON_PRINTABLE = "[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]"


class _LazyPattern:
    def __init__(self, pattern: str, flags: int) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return getattr(self._compiled, name)


def _import_yaml() -> ModuleType:
    """``yaml``, imported with that one pattern left uncompiled until something uses it. (If a PyYAML
    release spells the pattern differently, nothing matches and it is compiled as usual.)"""
    if "yaml" in sys.modules:
        return sys.modules["yaml"]
    real = re.compile

    def compile_(pattern: Any, flags: int = 0) -> Any:
        return _LazyPattern(pattern, flags) if pattern == _NON_PRINTABLE else real(pattern, flags)

    re.compile = compile_
    try:
        import yaml
    finally:
        re.compile = real
    return yaml


if TYPE_CHECKING:
    import yaml as yaml  # re-exported for regfp's YAML readers
else:
    yaml = _import_yaml()

MAX_DEPTH = 64  # nested mappings and sequences; recipes use about 6, Helm's Chart.yaml about 4


class YamlTooLarge(Exception):
    """The document nests too deep or expands too far; ``line`` is 1-based. Callers turn it into
    their own error (a recipe's file:line, a chart's file name)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


@dataclass
class _Open:
    """A mapping or sequence whose end event has not come yet."""

    anchor: str | None
    start: int  # the expanded size when it began
    height: int = 1  # levels of nesting it holds, itself included


def check_bounds(stream: str | bytes, *, loader: Any, max_depth: int = MAX_DEPTH, max_expanded: int) -> None:
    """Raise YamlTooLarge if ``stream`` nests deeper than ``max_depth`` or if, with every alias replaced
    by what it names, it would hold more than ``max_expanded`` units (one per node plus one per
    character of every scalar: roughly its size as text). Syntax errors are left to the real parse,
    which reports them with their position; a stream that ends early is simply cut short here."""
    opened: list[_Open] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded size, height)
    in_progress: set[str] = set()
    size = 0

    def grow(amount: int, mark: Any) -> None:
        nonlocal size
        size += amount
        if size > max_expanded:
            raise YamlTooLarge(_line(mark), f"the document is too large once its aliases are expanded "
                                            f"(over {max_expanded} characters)")

    def place(height: int, mark: Any) -> None:
        """A finished node of ``height`` levels now sits inside everything that is open."""
        if len(opened) + height > max_depth:
            raise YamlTooLarge(_line(mark), f"nested more than {max_depth} levels deep")
        if opened:
            opened[-1].height = max(opened[-1].height, height + 1)

    loader_obj = loader(stream)
    try:
        while loader_obj.check_event():
            event = loader_obj.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(opened) >= max_depth:
                    raise YamlTooLarge(_line(event.start_mark), f"nested more than {max_depth} levels deep")
                grow(1, event.start_mark)
                opened.append(_Open(event.anchor, size - 1))
                if event.anchor is not None:
                    in_progress.add(event.anchor)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                node = opened.pop()
                if node.anchor is not None:
                    in_progress.discard(node.anchor)
                    anchors[node.anchor] = (size - node.start, node.height)
                place(node.height, event.start_mark)
            elif isinstance(event, yaml.ScalarEvent):
                grow(1 + len(event.value), event.start_mark)
                if event.anchor is not None:
                    anchors[event.anchor] = (1 + len(event.value), 0)
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor in in_progress:
                    # PyYAML would build a cycle, which nothing that walks the result survives.
                    raise YamlTooLarge(_line(event.start_mark), f"alias *{event.anchor} refers to a node that "
                                                                "contains it")
                named = anchors.get(event.anchor or "")
                if named is not None:  # an unknown alias is the composer's error to report
                    grow(named[0], event.start_mark)
                    place(named[1], event.start_mark)
    except yaml.YAMLError:
        return  # not valid YAML: the real parse says where
    finally:
        loader_obj.dispose()


def _line(mark: Any) -> int:
    return int(mark.line) + 1 if mark is not None else 1
