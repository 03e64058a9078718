"""Terminal output: errors and notes on stderr, results on stdout, JSON as one document."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

_err: Console | None = None
_out: Console | None = None


def err_console() -> Console:
    global _err
    if _err is None:
        _err = Console(stderr=True, highlight=False)
    return _err


def out_console() -> Console:
    global _out
    if _out is None:
        _out = Console(highlight=False)
    return _out


def error(message: str) -> None:
    err_console().print(f"[bold red]error:[/] {_escape(message)}", soft_wrap=True)


def note(message: str) -> None:
    err_console().print(_escape(message), soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
