"""Source images (Kf-style): ``regfp data push --git`` stores a commit's tree as one deterministic tar
layer. Checked with real repositories and clones: the same commit gives the same digest from any
clone, the working tree never leaks in, and the pulled tree equals ``git archive`` of the commit."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import regfp, regfp_json
from gitrepo import GIT_ENV, GitRepo
from registry_support import Registry
from test_data import layout_manifest, tree_of

from regctl_fp.oci import mediatypes as mt

pytest_plugins = ["registry_fixtures"]


@pytest.fixture
def source(tmp_path: Path) -> tuple[GitRepo, str]:
    repo = GitRepo.init(tmp_path / "origin")
    repo.write("README.md", "# demo\n")
    repo.write("app/main.py", "print('hi')\n")
    repo.write("app/run.sh", "#!/bin/sh\nexec python3 main.py\n", mode=0o755)
    repo.write("app/data/ünïcode name.txt", "unicode\n")
    os.symlink("app/run.sh", repo.path / "start")
    repo.commit("first")
    repo.write("app/main.py", "print('hello')\n")
    sha = repo.commit("second")
    # Neither of these is in the commit: they must never reach the image.
    repo.write("app/main.py", "print('uncommitted')\n")
    repo.write("untracked.txt", "secret\n")
    return repo, sha


def clone(origin: Path, to: Path) -> Path:
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "clone", "-q", str(origin), str(to)], check=True, env=env, capture_output=True)
    return to


def git_archive(repo: Path, sha: str, dest: Path) -> Path:
    data = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", sha], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        # tarfile's extraction filters came with Python 3.11.4; Debian 12's 3.11.2 lacks them (our own archive).
        tar.extractall(dest, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    return dest


def test_same_commit_from_two_clones_gives_one_digest_and_pulls_back_as_git_archive(
        source: tuple[GitRepo, str], tmp_path: Path, registry: Registry) -> None:
    repo, sha = source
    a = clone(repo.path, tmp_path / "clone-a")
    b = clone(repo.path, tmp_path / "clone-b")
    os.utime(b / "README.md", (5, 5))  # checkout times differ between clones anyway
    url = "https://git.example.com/demo.git"
    first = regfp_json("data", "push", "--git", str(a), "--ref", sha, "--url", url, "--to", f"oci:{tmp_path}/l1:src:1")
    target = f"{registry.host}/source/demo:{sha[:12]}"
    second = regfp_json("data", "push", "--git", str(b), "--ref", "main", "--url", url, "--to", target)
    assert first["digest"] == second["digest"]
    # Pushed from the origin, whose working tree is dirty: still the same commit, the same digest.
    third = regfp_json("data", "push", "--git", str(repo.path), "--ref", sha, "--url", url,
                       "--to", f"oci:{tmp_path}/l3:src:1")
    assert third["digest"] == first["digest"]

    manifest, _ = layout_manifest(tmp_path / "l1", "src:1")
    assert manifest["artifactType"] == "application/vnd.regfp.source.v1"
    assert manifest["config"]["mediaType"] == mt.OCI_EMPTY
    assert manifest["annotations"] == {"org.opencontainers.image.revision": sha,
                                       "org.opencontainers.image.created": "2023-11-15T00:13:20Z",
                                       "org.opencontainers.image.source": url}
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == mt.OCI_LAYER_GZIP and "org.opencontainers.image.title" not in layer["annotations"]
    assert layer["annotations"]["io.deis.oras.content.unpack"] == "true"
    blob = (tmp_path / "l1/blobs/sha256" / layer["digest"].split(":")[1]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        members = tar.getmembers()
    assert {m.mtime for m in members} == {repo.time} == {1_700_007_200}  # the second commit's time
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}
    assert "untracked.txt" not in [m.name for m in members]
    modes = {m.name: m.mode for m in members if m.isfile()}
    assert modes == {"README.md": 0o644, "app/main.py": 0o644, "app/run.sh": 0o755,
                     "app/data/ünïcode name.txt": 0o644}

    expected = tree_of(git_archive(repo.path, sha, tmp_path / "archive"))
    for ref, dest in ((f"oci:{tmp_path}/l1:src:1", tmp_path / "from-layout"), (target, tmp_path / "from-registry")):
        out = regfp_json("data", "pull", ref, str(dest))
        assert out["files"] == [{"path": ".", "kind": "tree", "digest": layer["digest"], "size": layer["size"]}]
        assert tree_of(dest) == expected
    assert (tmp_path / "from-layout/app/main.py").read_text() == "print('hello')\n"


def test_subdir_other_commits_and_bad_refs(source: tuple[GitRepo, str], tmp_path: Path) -> None:
    repo, sha = source
    first_sha = repo.git("rev-parse", "HEAD~1")
    sub = regfp_json("data", "push", "--git", str(repo.path), "--ref", sha, "--subdir", "app",
                     "--to", f"oci:{tmp_path}/l:sub:1")
    manifest, _ = layout_manifest(tmp_path / "l", "sub:1")
    assert manifest["annotations"]["dev.regfp.source.subdir"] == "app"
    assert "org.opencontainers.image.source" not in manifest["annotations"]
    regfp("data", "pull", f"oci:{tmp_path}/l:sub:1", str(tmp_path / "sub"))
    expected = {k[len("app/"):]: v for k, v in tree_of(git_archive(repo.path, sha, tmp_path / "arch")).items()
                if k.startswith("app/")}
    assert tree_of(tmp_path / "sub") == expected
    older = regfp_json("data", "push", "--git", str(repo.path), "--ref", first_sha, "--subdir", "app",
                       "--to", f"oci:{tmp_path}/l:sub:0")
    assert older["digest"] != sub["digest"]
    for args, message in ((["--ref", "no-such-branch"], "unknown ref"), (["--ref", sha[:8]], "short commit id"),
                          (["--ref", sha, "--subdir", "missing"], "not a directory"),
                          (["--ref", sha, "--compression", "lz4"], "unknown compression")):
        proc = regfp("data", "push", "--git", str(repo.path), *args, "--to", f"oci:{tmp_path}/never:x:1", check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "never").exists()
    proc = regfp("data", "push", str(tmp_path), "--git", str(repo.path), "--to", f"oci:{tmp_path}/never:x:1",
                 check=False)
    assert proc.returncode == 2 and "either paths or --git" in proc.stderr


def test_zstd_source_layer(source: tuple[GitRepo, str], tmp_path: Path) -> None:
    repo, sha = source
    regfp("data", "push", "--git", str(repo.path), "--ref", sha, "--compression", "zstd",
          "--to", f"oci:{tmp_path}/z:src:1")
    manifest, _ = layout_manifest(tmp_path / "z", "src:1")
    assert manifest["layers"][0]["mediaType"] == mt.OCI_LAYER_ZSTD
    regfp("data", "pull", f"oci:{tmp_path}/z:src:1", str(tmp_path / "out"))
    assert tree_of(tmp_path / "out") == tree_of(git_archive(repo.path, sha, tmp_path / "arch"))
    assert json.loads((tmp_path / "z/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
