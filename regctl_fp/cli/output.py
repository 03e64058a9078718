"""Terminal output: errors and notes on stderr, results on stdout, JSON as one document.

Everything shown here may come from outside (arguments, paths, image configs), so it is printed
literally: no rich markup, no emoji codes, and control characters escaped so a hostile name cannot
move the cursor, recolour the terminal or hide text. And whatever is printed, by whichever printer
(ours, rich, click, ``print``), passes through ``guard_streams``: the secrets this process sent to a
registry are masked, even when a registry echoed them back in an error.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..redaction import scrub

if TYPE_CHECKING:  # rich is imported only where a table or colour is drawn: it costs start-up
    from rich.console import Console
    from rich.text import Text

    from ..oci.descriptor import Descriptor

_err: Console | None = None
_out: Console | None = None


class _Scrubbing:
    """A text stream that masks every remembered secret (``redaction``) in what is written to it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for text in lines:
            self.write(text)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush, encoding... as the real stream
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Route stdout and stderr through the secret scrubber for the rest of the process (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Scrubbing):
            setattr(sys, name, _Scrubbing(stream))

# Categories a name never needs and a terminal may act on: controls, format chars (bidi overrides),
# lone surrogates (undecodable bytes of a path), private use and unassigned code points.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def err_console() -> Console:
    global _err
    if _err is None:
        from rich.console import Console

        _err = Console(stderr=True, highlight=False, emoji=False, markup=False)
    return _err


# Off a terminal rich would wrap at 80 columns (or $COLUMNS): a pipe gets lines as long as they are.
_PIPE_WIDTH = 1 << 16


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def out_console() -> Console:
    global _out
    if _out is None:
        from rich.console import Console

        _out = Console(highlight=False, emoji=False, markup=False,
                       width=None if stdout_is_terminal() else _PIPE_WIDTH)
    return _out


def clean(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` safe for a terminal: control and invisible characters become visible escapes."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif ch == "\t":
            out.append("    ")
        elif unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            code = ord(ch)
            if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
                out.append(f"\\x{code - 0xDC00:02x}")
            elif code < 0x100:
                out.append(f"\\x{code:02x}")
            else:
                out.append(f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def error(message: str) -> None:
    if not sys.stderr.isatty():
        _write(sys.stderr, "error: " + clean(message))
        return
    from rich.text import Text

    text = Text()
    text.append("error:", style="bold red")
    text.append(" " + clean(message))
    err_console().print(text, soft_wrap=True)


def note(message: str) -> None:
    _write(sys.stderr, clean(message))


def line(text: str | Text) -> None:
    """One line of a result on stdout, never wrapped (so it can be piped and grepped)."""
    if isinstance(text, str):
        _write(sys.stdout, clean(text, keep_newlines=False))
    else:
        out_console().print(text, soft_wrap=True)


def records(header: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> None:
    """A table on a terminal; elsewhere (a pipe, a file) one line per record: the header, then each row,
    columns padded to their widest value and two spaces apart, nothing cut, wrapped or boxed, so ``grep``,
    ``cut`` and ``awk`` see whole values. Cells are sanitised here."""
    if stdout_is_terminal():
        from rich.table import Table

        cells = [[clean(c, keep_newlines=False) for c in row] for row in rows]
        table = Table(title=clean(title) if title else None, show_edge=False, header_style="bold")
        for h in header:
            table.add_column(h, overflow="fold")
        for row in cells:
            table.add_row(*row)
        out_console().print(table)
        return
    columns(header, rows)


def columns(header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> None:
    """Plain lines on stdout: the header (if any), then one line per row, columns padded to their widest
    value and two spaces apart; values are never cut."""
    cells = [[clean(c, keep_newlines=False) for c in row] for row in rows]
    lines = cells if header is None else [list(header), *cells]
    if not lines:
        return
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        _write(sys.stdout, "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def raw(data: bytes) -> None:
    """Bytes exactly as stored (``inspect --raw``), for a pipe or a file. On a terminal they are shown as
    sanitised text instead: a hostile document must not drive the terminal."""
    if stdout_is_terminal():
        _write(sys.stdout, clean(data.decode("utf-8", "replace")))
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _write(stream: Any, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def print_json(value: Any) -> None:
    """The one JSON document of a ``--json`` run. ASCII only, so any terminal or parser takes it."""
    global _json_written
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
    _json_written = True


_json_written = False


def referrer_json(desc: Descriptor) -> dict[str, Any]:
    """A referrer as ``--json`` shows it (copy, ls, inspect): what a referrers API lists for it."""
    return {"artifactType": desc.artifact_type, "digest": desc.digest.text, "mediaType": desc.media_type,
            "size": desc.size, "annotations": dict(desc.annotations)}


def json_error(message: str, code: int, kind: str) -> None:
    """With ``--json`` a failure is a JSON document too, so stdout always parses; unless the result was
    already printed (a failure after it), because stdout holds exactly one document."""
    if not _json_written:
        print_json({"error": {"message": message, "type": kind, "exitCode": code}})
