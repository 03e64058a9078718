"""Reading a Git repository through the git CLI: refs to commits, trees and blobs of a commit object.

The working tree is never read, so uncommitted or untracked files can never leak into an image.
Blobs stream from one ``git cat-file --batch`` process in the order the layer writer asks for them.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tarfile

from .errors import InvalidInput, RegfpError
from .oci.streams import ByteReader
from .values import valueclass

_HEX = re.compile(r"[0-9a-f]+")
_PACKED_REFS_LIMIT = 16 << 20  # bytes of packed-refs scanned for a tag; a larger file is left to git
_GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


class GitError(InvalidInput):
    """A repository or ref that cannot be used (exit 2: the recipe names something that is not there)."""


@valueclass
class Commit:
    sha: str
    time: int  # committer time, seconds since the epoch
    tag: str | None  # the tag name when the ref was a tag


@valueclass
class TreeEntry:
    path: bytes  # relative to the tree root asked for
    mode: int  # git mode: 0o100644, 0o100755, 0o120000 (symlink), 0o160000 (submodule)
    oid: str
    size: int

    @property
    def is_symlink(self) -> bool:
        return self.mode == 0o120000

    @property
    def is_submodule(self) -> bool:
        return self.mode == 0o160000


def _git(repo: Path | None, *args: str, input: bytes | None = None) -> bytes:
    cmd = ["git", *(["-C", str(repo)] if repo else []), *args]
    env = {**os.environ, **_GIT_ENV}
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, env=env, timeout=600)
    except FileNotFoundError:
        raise RegfpError("git is not installed (regfp reads sources with the git CLI)") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
    return proc.stdout


def _owned(path: Path) -> bool:
    """Whether this user owns the checkout (else git's safe.directory rules apply: git is asked)."""
    try:
        return path.stat().st_uid == os.getuid()
    except OSError:
        return False


def is_url(location: str) -> bool:
    return "://" in location or re.match(r"^[\w.-]+@[\w.-]+:", location) is not None


class Repository:
    def __init__(self, git_dir: Path, shown: str) -> None:
        self.git_dir = git_dir
        self.shown = shown

    @classmethod
    def open(cls, location: str, *, base: Path, cache: Path | None = None) -> Repository:
        """A local repository (path relative to ``base``) or a URL mirrored into ``cache``."""
        if is_url(location):
            if cache is None:
                raise GitError(f"{location}: remote repositories need a cache directory")
            return cls._mirror(location, cache)
        path = (base / location).resolve()
        if not path.exists():
            raise GitError(f"repository {location!r} ({path}) does not exist")
        dot_git = path / ".git"
        if (dot_git / "HEAD").is_file() and (dot_git / "objects").is_dir() and _owned(path):
            # The common case, a checkout's own .git directory: what ``rev-parse --absolute-git-dir``
            # answers (git stops at the first .git walking up), without starting git.
            return cls(dot_git, location)
        try:
            out = _git(path, "rev-parse", "--absolute-git-dir")
        except GitError:
            raise GitError(f"{location!r} ({path}) is not a Git repository") from None
        return cls(Path(out.decode().strip()), location)

    @classmethod
    def _mirror(cls, url: str, cache: Path) -> Repository:
        target = cache / "git" / hashlib.sha256(url.encode()).hexdigest()[:32]
        if (target / "HEAD").exists():
            _git(target, "fetch", "--prune", "--tags", "origin", "+refs/*:refs/*")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            _git(None, "clone", "--mirror", "--quiet", url, str(tmp))
            os.replace(tmp, target)
        return cls(target, url)

    @property
    def basename(self) -> str:
        """The repository's name: its directory (``x`` for ``x/.git`` or ``x.git``)."""
        d = self.git_dir
        name = d.parent.name if d.name == ".git" else d.name
        if is_url(self.shown):
            name = self.shown.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        return name.removesuffix(".git")

    def resolve(self, ref: str) -> Commit:
        """A branch, tag or full commit id -> the commit. Short ids are refused (they can become ambiguous)."""
        if not ref or ref.startswith("-") or ".." in ref or any(c in ref for c in " ~^:?*[\\\0"):
            raise GitError(f"{self.shown}: {ref!r} is not a branch, tag or full commit id")
        tag = None
        if ref.startswith("refs/tags/"):
            tag = ref.removeprefix("refs/tags/")
        elif self._has_ref(f"refs/tags/{ref}"):
            tag = ref
        is_hex = _HEX.fullmatch(ref) is not None
        if is_hex and len(ref) not in (40, 64) and tag is None and not self._has_ref(f"refs/heads/{ref}"):
            count = _git(self.git_dir, "rev-parse", "--disambiguate=" + ref).decode().split() if len(ref) >= 4 else []
            more = f" (it matches {len(count)} objects)" if len(count) > 1 else ""
            raise GitError(f"{self.shown}: short commit id {ref!r} is not accepted{more}; use the full 40-character id")
        try:
            # The commit and its committer time in one process (this runs on every build): ``git log``,
            # not ``git show -s`` (~10 ms: it sets up its diff machinery even with -s). A range cannot
            # get here (``..`` is refused above), so the one line is the commit ``ref`` names.
            sha, _, time = _git(self.git_dir, "log", "-1", "--no-walk", "--format=%H %ct", "--end-of-options",
                                f"{ref}^{{commit}}", "--").decode().strip().partition(" ")
        except GitError:
            close = self._close_refs(ref)
            hint = f"; did you mean {close!r}?" if close else ""
            raise GitError(f"{self.shown}: unknown ref {ref!r} (no such branch, tag or commit){hint}") from None
        return Commit(sha, int(time), tag)

    def _close_refs(self, ref: str) -> str | None:
        """The branch or tag whose name is closest to ``ref`` (a typo's likely meaning), if any is close."""
        import difflib

        try:  # bounded: a repository with more refs than this gets suggestions from the first ones
            out = _git(self.git_dir, "for-each-ref", "--count=10000", "--format=%(refname:lstrip=2)",
                       "refs/heads", "refs/tags")
        except GitError:
            return None
        names = out.decode("utf-8", "replace").split()
        close = difflib.get_close_matches(ref.removeprefix("refs/tags/").removeprefix("refs/heads/"), names,
                                          n=1, cutoff=0.6)
        return close[0] if close else None

    def last_change(self, sha: str, paths: list[str]) -> int | None:
        """Committer time of the newest commit up to ``sha`` that touched any of ``paths``."""
        out = _git(self.git_dir, "log", "-1", "--format=%ct", sha, "--", *(paths or ["."])).decode().strip()
        return int(out) if out else None

    def _has_ref(self, full: str) -> bool:
        known = self._ref_in_files(full)
        if known is not None:
            return known
        try:
            _git(self.git_dir, "show-ref", "--verify", "--quiet", full)
        except GitError:
            return False
        return True

    def _ref_in_files(self, full: str) -> bool | None:
        """Whether ``full`` (``refs/...``) exists, read from the ref files of a plain repository: a loose
        ref file, else a line of ``packed-refs``. None where only git can tell (a linked worktree, the
        reftable format, a packed-refs file too large to scan): the caller asks git."""
        d = self.git_dir
        if (d / "commondir").exists() or (d / "reftable").exists():
            return None
        try:
            if (d / full).is_file():
                return True
            packed = d / "packed-refs"
            if not packed.exists():
                return False
            if packed.stat().st_size > _PACKED_REFS_LIMIT:
                return None
            with open(packed, "rb") as f:
                lines = f.read(_PACKED_REFS_LIMIT + 1).splitlines()
        except OSError:
            return None
        want = b" " + full.encode()
        return any(line.endswith(want) and not line.startswith((b"#", b"^")) for line in lines)

    def tree(self, sha: str, subdir: str = "") -> list[TreeEntry]:
        """Every blob and link below ``subdir`` at ``sha``, paths relative to ``subdir``."""
        sub = subdir.strip("/")
        if sub in ("", "."):
            sub = ""
        args = ["ls-tree", "-r", "-z", "-l", "--full-tree", sha]
        if sub:
            kind = self._object_type(sha, sub)
            if kind != "tree":
                raise GitError(f"{self.shown}: subdir {subdir!r} is not a directory at {sha[:12]}")
            args += ["--", sub + "/"]
        out = _git(self.git_dir, *args)
        entries = []
        prefix = sub.encode() + b"/" if sub else b""
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, _obj_type, oid, size = meta.split()
            entries.append(TreeEntry(path[len(prefix):], int(mode, 8), oid.decode(),
                                     0 if size == b"-" else int(size)))
        return entries

    def _object_type(self, sha: str, path: str) -> str | None:
        try:
            return _git(self.git_dir, "cat-file", "-t", f"{sha}:{path}").decode().strip()
        except GitError:
            return None

    def blobs(self) -> BlobReader:
        return BlobReader(self.git_dir)

    def export(self, sha: str, dest: Path) -> None:
        """Write the tree of ``sha`` into ``dest`` (for host-side run steps)."""
        import tarfile

        archive = subprocess.Popen(["git", "-C", str(self.git_dir), "archive", "--format=tar", sha],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **_GIT_ENV})
        assert archive.stdout is not None
        with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
            if hasattr(tarfile, "tar_filter"):
                tar.extractall(dest, filter="tar")
            else:  # Python before 3.11.4 (Debian 12 ships 3.11.2): the "tar" filter's checks, by hand
                root = os.path.realpath(dest)
                for member in tar:
                    _check_export_member(member, root)
                    member.mode &= 0o755  # no setuid/setgid/sticky, no group or other write (as the filter)
                    tar.extract(member, dest)
        err = archive.stderr.read() if archive.stderr else b""
        if archive.wait() != 0:
            raise GitError(f"git archive failed: {err.decode('utf-8', 'replace').strip()}")


def _check_export_member(member: tarfile.TarInfo, root: str) -> None:
    """Refuse what tarfile's "tar" extraction filter refuses: absolute names, names or hard links that
    leave ``root`` (following the links extracted so far), and device nodes."""
    name = member.name
    target = os.path.realpath(os.path.join(root, name))
    link = member.linkname
    bad = (os.path.isabs(name) or (target != root and not target.startswith(root + os.sep)) or member.isdev()
           or (member.islnk() and (os.path.isabs(link) or ".." in link.split("/"))))
    if bad:
        raise GitError(f"git archive gave an entry regfp will not extract: {name!r}")


class BlobReader:
    """One ``git cat-file --batch`` process; ``open(oid)`` streams a blob (read it fully before the next)."""

    def __init__(self, git_dir: Path) -> None:
        self._proc = subprocess.Popen(["git", "-C", str(git_dir), "cat-file", "--batch"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env={**os.environ, **_GIT_ENV})

    def open(self, oid: str) -> _Limited:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(oid.encode() + b"\n")
        self._proc.stdin.flush()
        header = self._proc.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise GitError(f"git object {oid} is not a readable blob")
        return _Limited(self._proc.stdout, int(header[2]))

    def read(self, oid: str) -> bytes:
        with self.open(oid) as f:
            return f.read()

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=30)

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Limited:
    """Exactly ``size`` bytes of the batch output, then the newline git adds after each object."""

    def __init__(self, stream: ByteReader, size: int) -> None:
        self._stream = stream
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = self._stream.read(want)
        if not data:
            raise GitError("git cat-file ended early")
        self._left -= len(data)
        if self._left == 0:
            self._stream.read(1)  # the separator newline
        return data

    def close(self) -> None:
        while self.read(1 << 20):
            pass

    def __enter__(self) -> _Limited:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def walk_dirs(paths: Iterator[bytes]) -> set[bytes]:
    """Every directory (as a relative path) that contains one of ``paths``."""
    dirs: set[bytes] = set()
    for p in paths:
        while b"/" in p:
            p = p.rpartition(b"/")[0]
            if p in dirs:
                break
            dirs.add(p)
    return dirs
