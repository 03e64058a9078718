"""Real Git repositories for tests, with fixed identities and dates so commit ids are reproducible."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer", "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
}


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._clock = 1_700_000_000  # fixed dates: the same history gives the same commit ids

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV, "GIT_AUTHOR_DATE": f"@{self._clock} +0000",
               "GIT_COMMITTER_DATE": f"@{self._clock} +0000"}
        out = subprocess.run(["git", "-C", str(self.path), *args], env=env, check=True, capture_output=True,
                             text=True)
        return out.stdout.strip()

    @classmethod
    def init(cls, path: Path) -> GitRepo:
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path)
        repo.git("init", "-q", "-b", "main")
        return repo

    def write(self, rel: str, content: str | bytes, mode: int = 0o644) -> None:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        os.chmod(p, mode)

    def commit(self, message: str = "change") -> str:
        self._clock += 3600
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    @property
    def time(self) -> int:
        return self._clock
