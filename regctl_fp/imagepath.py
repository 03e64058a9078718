"""What a path inside an image may be: one set of rules for recipe destinations, Git trees and directories.

A name starting with ``.wh.`` is an OCI whiteout: unpacking a layer that holds ``etc/.wh.passwd``
deletes the ``etc/passwd`` of every layer below. regfp writes whiteouts only on purpose, never because
a recipe, a commit or a directory happened to hold such a name.
"""

from __future__ import annotations

WHITEOUT_PREFIX = ".wh."
WHITEOUT_REASON = "names starting with '.wh.' are reserved for OCI whiteouts (they delete files of the layers below)"
_WHITEOUT = WHITEOUT_PREFIX.encode()


def is_whiteout_name(name: bytes | str) -> bool:
    """Whether one path component is a whiteout name."""
    return name.startswith(_WHITEOUT) if isinstance(name, bytes) else name.startswith(WHITEOUT_PREFIX)


def whiteout_component(path: bytes) -> bytes | None:
    """The first ``/``-separated component of ``path`` that is a whiteout name, if any."""
    return next((part for part in path.split(b"/") if part.startswith(_WHITEOUT)), None)


def image_path_problem(path: str, *, root_ok: bool = False, trailing_slash_ok: bool = False) -> str | None:
    """Why ``path`` cannot name a place in an image (None if it can): absolute, in its plain form (no
    empty, ``.`` or ``..`` components), no NUL, no whiteout names; the root itself only if ``root_ok``."""
    if not path.startswith("/"):
        return "must be an absolute path in the image (start with '/')"
    if "\0" in path:
        return "must not contain NUL"
    body = path[1:]
    if trailing_slash_ok and len(body) > 1 and body.endswith("/"):
        body = body[:-1]
    if not body:
        return None if root_ok else "names the image's root directory, not a file"
    for part in body.split("/"):
        if part == "":
            return "must not contain empty components ('//' or a trailing '/')"
        if part in (".", ".."):
            return f"must not contain '{part}' components"
        if is_whiteout_name(part):
            return f"has the component {part!r}: {WHITEOUT_REASON}"
    return None
