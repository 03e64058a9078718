"""A one-line note when the recipe's source has uncommitted changes: regfp builds commits, never the working
tree (by design: the same commit gives the same image anywhere), and a user who just edited a file should
not have to find that out from an unchanged digest."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from . import output

_TIMEOUT = 5.0  # seconds; a note is not worth waiting for on a huge or slow checkout
_SHOWN = 3  # changed paths named in the note


_pending: list[Callable[[], None]] = []


def note_if_dirty(recipe: Path) -> None:
    """Say so on stderr when the recipe's local source checkout has changes under ``source.subdir`` and the
    recipe's ref is what is checked out there (HEAD, its branch or its commit). Silent on any problem:
    the command itself reports a bad recipe or repository.

    ``git status`` runs in the background while the command works (it is a note, not a precondition), and
    the note is said when the command ends (``finish_notes``)."""
    from ..errors import RegfpError
    from ..gitsource import is_url
    from .recipe_file import load

    try:
        lr = load(recipe)
    except RegfpError:
        return
    source = lr.recipe.source
    if source is None or is_url(source.git):
        return
    checkout = lr.resolve(source.git)
    if not checkout.is_dir():
        return
    subdir = source.subdir.strip("/")
    proc = _start_status(checkout, subdir)
    if proc is None:
        return

    def finish() -> None:
        state = _status(proc)
        if state is None:
            return
        commit, branch, changed = state
        if not changed or source.ref not in {"HEAD", commit, branch, f"refs/heads/{branch}"}:
            return
        where = f" under {subdir}/" if subdir else ""
        shown = ", ".join(changed[:_SHOWN]) + (f" and {len(changed) - _SHOWN} more" if len(changed) > _SHOWN else "")
        output.note(f"note: {source.git} has uncommitted changes{where} ({shown}); regfp builds commit "
                    f"{commit[:12]} ({source.ref}), never the working tree: commit to include them")

    _pending.append(finish)


def finish_notes() -> None:
    """Say the notes of the checks started for this command (once each)."""
    while _pending:
        _pending.pop(0)()


def _start_status(checkout: Path, subdir: str) -> subprocess.Popen[bytes] | None:
    spec = f":(top){subdir}" if subdir else ":(top)."
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        return subprocess.Popen(["git", "-C", str(checkout), "status", "--porcelain=v2", "--branch", "-z",
                                 "--untracked-files=normal", "--", spec],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    except OSError:
        return None


def _status(proc: subprocess.Popen[bytes]) -> tuple[str, str, list[str]] | None:
    """(HEAD's commit, its branch, changed paths) from the ``git status`` started for it, or None."""
    try:
        out, _ = proc.communicate(timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    if proc.returncode != 0:
        return None
    commit = branch = ""
    changed: list[str] = []
    records = iter(out.decode("utf-8", "surrogateescape").split("\0"))
    for record in records:
        if record.startswith("# branch.oid "):
            commit = record.removeprefix("# branch.oid ")
        elif record.startswith("# branch.head "):
            branch = record.removeprefix("# branch.head ")
        elif record[:2] in ("1 ", "u "):
            changed.append(record.split(" ", 8 if record[0] == "1" else 10)[-1])
        elif record.startswith("2 "):  # a rename: the new path, then the old one as its own record
            changed.append(record.split(" ", 9)[-1])
            next(records, None)
        elif record.startswith("? "):
            changed.append(record[2:])
    return (commit, branch, changed) if commit and commit != "(initial)" else None
