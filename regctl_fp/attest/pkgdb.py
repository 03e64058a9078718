"""Package databases and lockfiles as found in a layer, parsed into (ecosystem, name, version) records.

Which files are databases is decided by their path alone (``which``), so a reader of a layer only has
to look at the content of the few files that match. Parsers are tolerant (a record without a name or
version is skipped, bytes that are not UTF-8 are replaced) and bounded by the size of what they get.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Literal

Ecosystem = Literal["deb", "apk", "pypi", "npm", "cargo", "golang"]
DbKind = Literal["dpkg", "dpkg-status.d", "apk", "dist-info", "lockfile"]

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
APK_INSTALLED = "lib/apk/db/installed"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
# The lockfile names regfp reads when the recipe's dependency paths are directories.
_STRUCTURED = ("poetry.lock", "uv.lock", "pdm.lock", "Cargo.lock", "package-lock.json", "npm-shrinkwrap.json",
               "Pipfile.lock")
# A JSON or TOML lockfile becomes a tree of Python objects about ten times its size: read only up to this.
STRUCTURED_LIMIT = 8 << 20
# METADATA starts with its headers (name, version); the long description after them is never needed.
METADATA_HEAD = 256 << 10
_LOCKFILE_NAME = re.compile(r"(requirements[\w.-]*\.(txt|lock)|constraints[\w.-]*\.txt|poetry\.lock|uv\.lock|"
                            r"pdm\.lock|Pipfile\.lock|package-lock\.json|npm-shrinkwrap\.json|Cargo\.lock|go\.sum)")


@dataclass(frozen=True, order=True)
class Package:
    ecosystem: Ecosystem
    name: str
    version: str
    arch: str = ""
    source_name: str = ""  # dpkg ``Source`` / apk ``o:`` origin, when it differs from the name


def which(path: str, lockfiles: tuple[str, ...] = ()) -> DbKind | None:
    """The kind of package database at ``path`` (relative to the layer root, no leading ``/``), if any.

    ``lockfiles`` are the image paths of the recipe's dependency files or directories: a file named
    there is read whatever its name; below a named directory, only files with a lockfile's name."""
    if path == DPKG_STATUS:
        return "dpkg"
    if path.startswith(DPKG_STATUS_D) and "/" not in path[len(DPKG_STATUS_D):] and not path.endswith(".md5sums"):
        return "dpkg-status.d"
    if path == APK_INSTALLED:
        return "apk"
    if path.endswith("/METADATA") and path[:-len("/METADATA")].endswith(".dist-info"):
        return "dist-info"
    for lock in lockfiles:
        if path == lock or (path.startswith(lock + "/") and _LOCKFILE_NAME.fullmatch(path.rpartition("/")[2])):
            return "lockfile"
    return None


def read_limit(kind: DbKind, path: str) -> int | None:
    """How much of a database file is read: None for all of it (up to the scan's per-file limit), else a
    prefix (METADATA) or a ceiling above which the file is passed over (JSON and TOML lockfiles)."""
    if kind == "dist-info":
        return METADATA_HEAD
    if kind == "lockfile" and path.rpartition("/")[2] in _STRUCTURED:
        return STRUCTURED_LIMIT
    return None


def parse(kind: DbKind, path: str, data: bytes, limit: int) -> tuple[list[Package], bool]:
    """The packages recorded in ``data``, at most ``limit`` of them, and whether there were more."""
    found: Iterable[Package]
    if kind in ("dpkg", "dpkg-status.d"):
        found = _dpkg(data, require_status=kind == "dpkg")
    elif kind == "apk":
        found = _apk(data)
    elif kind == "dist-info":
        found = _dist_info(data)
    else:
        found = _lockfile(path.rpartition("/")[2], data)
    got = list(itertools.islice(found, limit + 1))
    return got[:limit], len(got) > limit


def _lines(data: bytes) -> Iterator[str]:
    """The lines of ``data`` one at a time (a list of them all can be many times the file's size)."""
    for raw in io.BytesIO(data):
        yield raw.decode("utf-8", "replace").rstrip("\r\n")


def _stanzas(data: bytes) -> Iterator[dict[str, str]]:
    """RFC 822-style paragraphs (dpkg status): ``Field: value`` lines, continuation lines dropped."""
    fields: dict[str, str] = {}
    for line in _lines(data):
        if not line.strip():
            if fields:
                yield fields
            fields = {}
        elif not line[0].isspace():
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip()] = value.strip()
    if fields:
        yield fields


def _dpkg(data: bytes, *, require_status: bool) -> Iterator[Package]:
    for f in _stanzas(data):
        name, version = f.get("Package"), f.get("Version")
        if not name or not version:
            continue
        # In the status file, a removed package keeps its record ("deinstall ok config-files"); the
        # files of status.d (distroless) hold installed packages only and have no Status field.
        if require_status and f.get("Status", "").split()[-1:] != ["installed"]:
            continue
        source = f.get("Source", "").split(" ")[0]
        yield Package("deb", name, version, f.get("Architecture", ""), source if source != name else "")


def _apk(data: bytes) -> Iterator[Package]:
    """The apk installed database: blank-line separated records of one-letter ``X:value`` lines."""
    f: dict[str, str] = {}
    for line in itertools.chain(_lines(data), [""]):
        if len(line) > 2 and line[1] == ":":
            f.setdefault(line[0], line[2:])
        elif not line.strip():
            if f.get("P") and f.get("V"):
                origin = f.get("o", "")
                yield Package("apk", f["P"], f["V"], f.get("A", ""), origin if origin != f["P"] else "")
            f = {}


def _dist_info(data: bytes) -> list[Package]:
    head = BytesHeaderParser().parsebytes(data.split(b"\n\n", 1)[0] + b"\n\n")
    name, version = head.get("Name"), head.get("Version")
    if not name or not version:
        return []
    return [Package("pypi", str(name).strip(), str(version).strip())]


_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*===?\s*([^\s;#\\]+)")


def _lockfile(name: str, data: bytes) -> Iterable[Package]:
    if name in _STRUCTURED:
        return _structured(name, data.decode("utf-8", "replace"))
    if name == "go.sum":
        return _go_sum(data)
    # requirements.txt and anything else the recipe names: ``name==version`` pins, one a line.
    return (Package("pypi", m.group(1), m.group(2)) for m in map(_PIN.match, _lines(data)) if m)


def _go_sum(data: bytes) -> Iterator[Package]:
    seen = set()
    for line in _lines(data):
        parts = line.split()
        if len(parts) == 3 and not parts[1].endswith("/go.mod") and (parts[0], parts[1]) not in seen:
            seen.add((parts[0], parts[1]))
            yield Package("golang", parts[0], parts[1])


def _structured(name: str, text: str) -> list[Package]:
    try:
        if name in ("poetry.lock", "uv.lock", "pdm.lock", "Cargo.lock"):
            doc = tomllib.loads(text)
            eco: Ecosystem = "cargo" if name == "Cargo.lock" else "pypi"
            return [Package(eco, str(p["name"]), str(p["version"])) for p in doc.get("package", [])
                    if isinstance(p, dict) and p.get("name") and p.get("version")]
        if name in ("package-lock.json", "npm-shrinkwrap.json"):
            packages = json.loads(text).get("packages", {})
            return [Package("npm", str(v.get("name") or k.rpartition("node_modules/")[2]), str(v["version"]))
                    for k, v in packages.items() if k and isinstance(v, dict) and v.get("version")]
        if name == "Pipfile.lock":
            doc = json.loads(text)
            return [Package("pypi", k, str(v["version"]).lstrip("=")) for part in ("default", "develop")
                    for k, v in (doc.get(part) or {}).items() if isinstance(v, dict) and v.get("version")]
    except (ValueError, AttributeError, TypeError, KeyError, RecursionError):
        pass  # a lockfile that does not parse still appears as a file (with its checksum)
    return []


def os_release_id(data: bytes) -> str:
    """The ``ID`` of an os-release file (e.g. ``debian``, ``alpine``), or "" if it has none."""
    for line in _lines(data):
        key, _, value = line.partition("=")
        if key.strip() == "ID":
            return value.strip().strip("\"'")
    return ""
