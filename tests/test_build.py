"""The build stage end to end: a real Git repository becomes a cached, reproducible image."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import need, regfp, regfp_json, run_image
from gitrepo import GitRepo
from project import GOLDEN, blob_files, layers, make_project
from project import build as build_all


def build(root: Path, *args: str) -> dict:
    """The build stage alone (the patch stage has its own tests)."""
    return build_all(root, "--only", "build", *args)

def test_build_golden_and_layering(tmp_path: Path) -> None:
    repo = make_project(tmp_path)
    first = build(tmp_path)
    [img] = first["images"]
    sha = repo.git("rev-parse", "HEAD")
    assert img["name"] == f"build/src:{sha}" and img["cached"] is False
    if platform.machine() == "x86_64":
        assert img["digest"] == GOLDEN
    before = layers(tmp_path / "out", img["name"])
    assert len(before) == 3  # base, dependencies, application

    repo.write("app/main.txt", "application code v2\n")
    sha2 = repo.commit("code only")
    [img2] = build(tmp_path)["images"]
    assert img2["name"] == f"build/src:{sha2}" and img2["digest"] != img["digest"]
    after = layers(tmp_path / "out", img2["name"])
    assert after[:2] == before[:2]  # base and dependency layers reused
    assert after[2] != before[2]


def test_build_is_cached_and_reports_it(tmp_path: Path) -> None:
    make_project(tmp_path)
    first = build(tmp_path, "--now", "2026-01-01T00:00:00Z")
    assert first["stats"]["layersCompressed"] == 3  # the dir: base and two app layers
    blobs = blob_files(tmp_path / "out")
    again = build(tmp_path, "--now", "2026-01-02T00:00:00Z")
    assert [i["cached"] for i in again["images"]] == [True]
    assert again["stats"]["layersCompressed"] == 0
    assert again["images"][0]["digest"] == first["images"][0]["digest"]
    assert blob_files(tmp_path / "out") == blobs


def test_rebuild_after_expiry(tmp_path: Path) -> None:
    make_project(tmp_path)
    time.sleep(2.1)  # a tree changed in the last 2 s is never kept in the dir: cache (racily clean, as git)
    first = build(tmp_path, "--now", "2026-01-01T00:00:00Z")
    blobs = blob_files(tmp_path / "out")
    before_ttl = build(tmp_path, "--now", "2026-03-31T23:59:59Z")  # 89 days later
    assert before_ttl["images"][0]["state"] == "cached" and before_ttl["stats"]["layersCompressed"] == 0
    assert blob_files(tmp_path / "out") == blobs
    plan = regfp_json("plan", str(tmp_path / "recipe.yaml"), "--now", "2026-04-02T00:00:00Z")
    node = next(n for n in plan["nodes"] if n["stage"] == "build")  # type: ignore[index]
    assert node["state"] == "expired" and "rebuildAfter 90d" in node["reason"]
    expired = build(tmp_path, "--now", "2026-04-02T00:00:00Z")
    [img] = expired["images"]
    assert img["state"] == "expired" and img["cached"] is False
    assert expired["stats"]["layersCompressed"] == 2  # the unchanged base directory is not tarred again
    # Same base, same commit: the rebuild reproduces the image exactly.
    assert img["digest"] == first["images"][0]["digest"]
    # The new build time restarts the clock.
    assert build(tmp_path, "--now", "2026-04-03T00:00:00Z")["images"][0]["cached"] is True


def test_expired_build_picks_up_the_base_as_it_is_then(tmp_path: Path) -> None:
    make_project(tmp_path)
    first = build(tmp_path, "--now", "2026-01-01T00:00:00Z")["images"][0]
    (tmp_path / "bases/os-1/etc/os-release").write_text("ID=test-os-1-patched\n")
    within = build(tmp_path, "--now", "2026-01-05T00:00:00Z")["images"][0]
    assert within["cached"] is True and within["digest"] == first["digest"]  # pinned until expiry
    later = build(tmp_path, "--now", "2026-06-01T00:00:00Z")["images"][0]
    assert later["cached"] is False and later["digest"] != first["digest"]


def test_same_commit_in_two_clones_gives_identical_digests(tmp_path: Path) -> None:
    make_project(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b", symlinks=True)
    one = build(tmp_path / "a")["images"][0]
    two = build(tmp_path / "elsewhere" / "b")["images"][0]
    assert one["digest"] == two["digest"]


def test_dirty_working_tree_does_not_leak(tmp_path: Path) -> None:
    repo = make_project(tmp_path)
    clean = build(tmp_path, "--out", str(tmp_path / "clean"))["images"][0]
    repo.write("app/main.txt", "uncommitted edit\n")
    repo.write("app/untracked.txt", "never committed\n")
    dirty = build(tmp_path, "--out", str(tmp_path / "dirty"))["images"][0]
    assert dirty["digest"] == clean["digest"]


def test_new_commit_new_build_unchanged_commit_none(tmp_path: Path) -> None:
    repo = make_project(tmp_path)
    a = build(tmp_path)["images"][0]
    repo.write("README.md", "outside the subdir, but still a new commit\n")
    sha = repo.commit("docs")
    b = build(tmp_path)["images"][0]
    assert b["name"] == f"build/src:{sha}" and b["cached"] is False
    assert b["digest"] != a["digest"]  # the revision annotation names the new commit
    assert build(tmp_path)["images"][0]["cached"] is True


def test_tag_ref_adds_a_tag_name(tmp_path: Path) -> None:
    repo = make_project(tmp_path, ref="v1.0.0")
    repo.git("tag", "v1.0.0")
    result = build(tmp_path)
    names = [i["name"] for i in result["images"]]
    sha = repo.git("rev-parse", "HEAD")
    assert names == [f"build/src:{sha}", "build/src:v1.0.0"]
    assert len({i["digest"] for i in result["images"]}) == 1


@pytest.mark.parametrize(("ref", "message"), [
    ("nope", "unknown ref 'nope'"),
    ("abc1234", "short commit id"),
    ("0" * 40, "unknown ref"),
    ("--help", "is not a branch, tag or full commit id"),
])
def test_bad_refs_are_clear_errors(tmp_path: Path, ref: str, message: str) -> None:
    make_project(tmp_path, ref=ref)
    proc = regfp("build", str(tmp_path / "recipe.yaml"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_repository(tmp_path: Path) -> None:
    make_project(tmp_path)
    shutil.rmtree(tmp_path / "src")
    proc = regfp("build", str(tmp_path / "recipe.yaml"), check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_run_step_outputs_are_layered(tmp_path: Path) -> None:
    repo = make_project(tmp_path)
    repo.write("app/Makefile", "dist:\n\tmkdir -p dist && echo built-at-$$SOURCE_DATE_EPOCH > dist/out.txt\n")
    repo.commit("make")
    recipe = (tmp_path / "recipe.yaml").read_text().replace(
        "  workdir: /app\n",
        "  workdir: /app\n  run: {command: [make, -s, dist], outputs: [{from: dist, to: /app/dist}]}\n")
    (tmp_path / "recipe.yaml").write_text(recipe)
    [img] = build(tmp_path)["images"]
    out = tmp_path / "unpacked"
    subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{tmp_path / 'out'}:{img['name']}", str(out)],
                   check=True, capture_output=True)
    assert (out / "app/dist/out.txt").read_text() == f"built-at-{repo.time}\n"
    assert len(layers(tmp_path / "out", img["name"])) == 4


def test_failing_run_step_shows_output_and_writes_nothing(tmp_path: Path) -> None:
    make_project(tmp_path)
    recipe = (tmp_path / "recipe.yaml").read_text().replace(
        "  workdir: /app\n",
        "  workdir: /app\n  run: {command: 'echo compiling; echo broken >&2; exit 3', outputs: [{from: x, to: /x}]}\n")
    (tmp_path / "recipe.yaml").write_text(recipe)
    proc = regfp("build", str(tmp_path / "recipe.yaml"), check=False)
    assert proc.returncode == 1
    assert "exited 3" in proc.stderr and "compiling" in proc.stderr and "broken" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_built_image_passes_umoci_and_skopeo(tmp_path: Path, tool_env: dict[str, str]) -> None:
    make_project(tmp_path)
    [img] = build(tmp_path)["images"]
    ref = f"{tmp_path / 'out'}:{img['name']}"
    shown = subprocess.run([need("skopeo"), "inspect", f"oci:{ref}"], env=tool_env, capture_output=True,
                           text=True, check=True)
    info = json.loads(shown.stdout)
    assert info["Digest"] == img["digest"]
    assert info["Labels"] is None or isinstance(info["Labels"], dict)
    bundle = tmp_path / "bundle"
    subprocess.run([need("umoci"), "unpack", "--image", ref, str(bundle)], check=True, capture_output=True,
                   env=tool_env)
    root = bundle / "rootfs"
    assert (root / "app/run.sh").stat().st_mode & 0o777 == 0o755
    assert (root / "app/vendor/dep/lib.sh").read_text() == "dep() { :; }\n"
    assert not (root / "README.md").exists() and not (root / "app/README.md").exists()
    assert (root / "etc/os-release").read_text() == "ID=test-os-1\n"


def test_built_image_runs_under_runc(tmp_path: Path, tool_env: dict[str, str]) -> None:
    make_project(tmp_path, runnable=True)
    [img] = build(tmp_path)["images"]
    run = run_image(tmp_path / "out", img["name"], tmp_path / "bundle", tool_env)
    assert run.returncode == 0, run.stderr
    assert "hello hi on ID=test-os-1" in run.stdout
    assert "PORT=8080" in run.stdout


def _layer_paths(layout: Path, digest: str) -> set[str]:
    """The entry names of one gzip layer blob, read with the stdlib tarfile (an independent reader)."""
    import tarfile

    with tarfile.open(layout / "blobs/sha256" / digest.split(":", 1)[1], "r:gz") as tar:
        return {m.name.rstrip("/") for m in tar.getmembers()}


def test_dependencies_land_in_their_own_layer_where_the_copy_rules_put_them(tmp_path: Path) -> None:
    make_project(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(
        "  copy: [{from: ., to: /app}]\n",
        "  copy: [{from: ., to: /app}, {from: vendor, to: /opt/vendor}]\n"))
    [img] = build(tmp_path)["images"]
    _, deps, app = layers(tmp_path / "out", img["name"])
    dep_paths = _layer_paths(tmp_path / "out", deps)
    assert {"app/requirements.lock", "app/vendor/dep/lib.sh", "opt/vendor/dep/lib.sh"} <= dep_paths
    app_paths = _layer_paths(tmp_path / "out", app)
    assert {"app/main.txt", "app/run.sh"} <= app_paths
    assert not any("vendor" in p or "requirements" in p for p in app_paths)


@pytest.mark.parametrize(("deps", "copy", "message"), [
    ("[requirements.lock, vendor]", "[{from: run.sh, to: /app/}, {from: main.txt, to: /app/}]",
     "dependency 'requirements.lock' is not under any copy rule's 'from' ('run.sh', 'main.txt'), so it would "
     "not be in the image"),
    ("[requirements.lock, vendor]", "[{from: requirements.lock, to: /app/}, {from: vendor/dep, to: /lib/dep}]",
     "only part of dependency 'vendor' is copied (copy from 'vendor/dep')"),
])
def test_dependencies_no_copy_rule_covers_are_refused(tmp_path: Path, deps: str, copy: str, message: str) -> None:
    make_project(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    text = recipe.read_text().replace("  dependencies: [requirements.lock, vendor]\n", f"  dependencies: {deps}\n")
    recipe.write_text(text.replace("  copy: [{from: ., to: /app}]\n", f"  copy: {copy}\n"))
    proc = regfp("build", str(recipe), check=False)
    assert proc.returncode == 2, proc.stderr
    line = next(i for i, t in enumerate(recipe.read_text().splitlines(), 1) if "dependencies:" in t)
    assert f"{recipe}:{line}: {message}" in proc.stderr and "(at build.dependencies[" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_run_step_export_on_a_python_without_extraction_filters(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian 12's Python 3.11.2 has no tarfile extraction filters (3.11.4 added them): the export for a
    run step checks each entry by hand there, refusing what the "tar" filter refuses."""
    import tarfile

    from regctl_fp.gitsource import GitError, Repository, _check_export_member

    repo = GitRepo.init(tmp_path / "src")
    repo.write("app/a.txt", "a\n")
    repo.write("app/bin/run.sh", "#!/bin/sh\n", 0o755)
    sha = repo.commit("one")
    monkeypatch.delattr(tarfile, "tar_filter", raising=False)
    out = tmp_path / "export"
    out.mkdir()
    Repository.open(str(tmp_path / "src"), base=tmp_path).export(sha, out)
    assert (out / "app/a.txt").read_text() == "a\n" and os.access(out / "app/bin/run.sh", os.X_OK)
    root = str(out)
    for name, kind, link in (("/etc/x", tarfile.REGTYPE, ""), ("../x", tarfile.REGTYPE, ""),
                             ("dev", tarfile.CHRTYPE, ""), ("h", tarfile.LNKTYPE, "../../etc/passwd")):
        member = tarfile.TarInfo(name)
        member.type, member.linkname = kind, link
        with pytest.raises(GitError):
            _check_export_member(member, root)
    _check_export_member(tarfile.TarInfo("app/ok.txt"), root)


def test_refs_read_from_files_agree_with_git(tmp_path: Path) -> None:
    """A checkout's .git and its tags are read from the ref files (no git process for them) and agree
    with git: loose and packed tags, a branch that is no tag, a name in a peeled line; a linked worktree
    and a repository given by a path below its top are left to git."""
    from regctl_fp.gitsource import Repository

    repo = GitRepo.init(tmp_path / "r")
    repo.write("a.txt", "a\n")
    first = repo.commit()
    repo.git("tag", "loose")
    repo.git("tag", "-a", "-m", "annotated", "packed")
    repo.git("pack-refs", "--all")
    repo.git("tag", "later")
    opened = Repository.open("r", base=tmp_path)
    assert opened.git_dir == (tmp_path / "r" / ".git").resolve()
    for ref, want in [("loose", True), ("packed", True), ("later", True), ("main", False), ("nope", False)]:
        assert opened._ref_in_files(f"refs/tags/{ref}") is want, ref
        assert opened._has_ref(f"refs/tags/{ref}") is want, ref
    assert opened.resolve("packed").tag == "packed" and opened.resolve("packed").sha == first
    assert opened.resolve("main").tag is None
    repo.git("worktree", "add", "-q", "--detach", str(tmp_path / "wt"), "main")
    linked = Repository.open("wt", base=tmp_path)
    assert linked._ref_in_files("refs/tags/loose") is None  # refs live in the common dir: git is asked
    assert linked.resolve("loose").tag == "loose"
    (tmp_path / "r" / "sub").mkdir()
    below = Repository.open("r/sub", base=tmp_path)
    assert below.git_dir == opened.git_dir and below.resolve("later").tag == "later"
