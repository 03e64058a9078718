"""Multi-platform images through the tools (issue 18): inspect, verify, diff, copy, --push and the remote
cache take an image index end to end, in a layout and in the real registry; podman, skopeo and umoci
pick the arm64 image of what regfp pushed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, TOOLS_CACHE, elf_machine, make_arm64_rootfs, need, regfp, regfp_json, run_arm64
from registry_support import Fault, FaultProxy, Registry
from test_multiplatform import PROJECT, index_of, make_multi_project, manifest_of
from test_podman import podman

pytest_plugins = ["registry_fixtures"]


@dataclass(frozen=True)
class Built:
    root: Path  # the project (recipe.yaml, src/, bases/)
    layout: Path
    sha: str

    @property
    def build(self) -> str:
        return f"build/src:{self.sha}"

    def patch(self, channel: str) -> str:
        return f"patch/src/{self.sha}:{channel}"

    def ref(self, name: str) -> str:
        return f"oci:{self.layout}:{name}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A two-platform project built and patched once for the module; tests only read its layout."""
    root = tmp_path_factory.mktemp("multi")
    sha = make_multi_project(root / "project", make_arm64_rootfs(root / "rootfs-arm64"))
    regfp("build", str(root / "project/recipe.yaml"), "--only", "patch")
    return Built(root / "project", root / "project/out", sha)


@pytest.fixture
def tool_home(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    return dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
                XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
                XDG_RUNTIME_DIR=str(home / "run"))


def children(layout: Path, name: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {d["platform"]["architecture"]: d for d in index_of(layout, name)[1]["manifests"]}


# ---- inspect ---------------------------------------------------------------------------------------

def test_inspect_shows_the_index_and_its_platforms(built: Built, registry: Registry) -> None:
    entry, _index = index_of(built.layout, built.build)
    text = regfp("inspect", built.ref(built.build)).stdout
    assert "application/vnd.oci.image.index.v1+json" in text and "linux/amd64, linux/arm64" in text
    doc = regfp_json("inspect", built.ref(built.build))
    assert doc["digest"] == entry["digest"] and doc["platforms"] == ["linux/amd64", "linux/arm64"]
    arm64 = children(built.layout, built.build)["arm64"]
    assert [m["digest"] for m in doc["manifests"]][1] == arm64["digest"]
    # --platform shows that platform's image: its config says arm64.
    one = regfp_json("inspect", built.ref(built.build), "--platform", "linux/arm64")
    assert one["digest"] == arm64["digest"] and one["config"]["content"]["architecture"] == "arm64", one
    # The same from the registry.
    remote = f"{registry.host}/mp-inspect/{uuid.uuid4().hex[:8]}:1"
    regfp("copy", built.ref(built.build), remote)
    shown = regfp_json("inspect", remote)
    assert shown["digest"] == entry["digest"] and shown["platforms"] == ["linux/amd64", "linux/arm64"]
    assert "linux/amd64, linux/arm64" in regfp("inspect", remote).stdout


# ---- verify ----------------------------------------------------------------------------------------

def _blob(layout: Path, digest: str) -> Path:
    algo, hexd = digest.split(":")
    return layout / "blobs" / algo / hexd


def _rename_entry(layout: Path, name: str, index: dict) -> None:  # type: ignore[type-arg]
    """Store ``index`` as a new blob and point ``name`` at it (as a tool that rewrote the index would)."""
    data = json.dumps(index, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _blob(layout, digest).write_bytes(data)
    top = json.loads((layout / "index.json").read_text())
    for d in top["manifests"]:
        if d["annotations"]["org.opencontainers.image.ref.name"] == name:
            d["digest"], d["size"] = digest, len(data)
    (layout / "index.json").write_text(json.dumps(top))


def test_verify_checks_every_platform_in_a_layout_and_in_a_registry(
        built: Built, registry: Registry, tmp_path: Path) -> None:
    ok = regfp_json("verify", built.ref(built.build))
    assert ok["ok"] and ok["verified"] == [f"{built.build} [linux/amd64]", f"{built.build} [linux/arm64]"]
    # A registry reference: every child manifest, config and layer fetched again and checked.
    remote = f"{registry.host}/mp-verify/{uuid.uuid4().hex[:8]}:1"
    regfp("copy", built.ref(built.patch("next")), remote)
    theirs = regfp_json("verify", remote)
    assert theirs["ok"] and theirs["verified"] == [f"{remote} [linux/amd64]", f"{remote} [linux/arm64]"], theirs

    # A layer only the arm64 image has, damaged: the arm64 entry fails, the amd64 one still verifies.
    layout = tmp_path / "damaged"
    shutil.copytree(built.layout, layout)
    arm64 = manifest_of(layout, children(layout, built.build)["arm64"])
    base_layer = _blob(layout, arm64["layers"][0]["digest"])
    data = bytearray(base_layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    base_layer.write_bytes(bytes(data))
    proc = regfp("verify", f"oci:{layout}:{built.build}", "--json", check=False)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["verified"] == [f"{built.build} [linux/amd64]"], doc
    assert all(p.startswith(f"{built.build} [linux/arm64]:") for p in doc["problems"]) and doc["problems"], doc


def test_verify_finds_an_index_entry_whose_platform_is_not_its_images(built: Built, tmp_path: Path) -> None:
    # An index whose entries swap their platforms: every digest is right, but a client asking for arm64
    # would get the amd64 image. Digests and sizes alone cannot tell; verify compares each entry with its config.
    layout = tmp_path / "swapped"
    shutil.copytree(built.layout, layout)
    _entry, index = index_of(layout, built.build)
    first, second = index["manifests"]
    first["platform"], second["platform"] = second["platform"], first["platform"]
    _rename_entry(layout, built.build, index)
    proc = regfp("verify", f"oci:{layout}:{built.build}", "--json", check=False)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and not doc["ok"] and "Traceback" not in proc.stderr
    assert any("[linux/arm64]: the index entry's platform linux/arm64 is not its image's (linux/amd64" in p
               for p in doc["problems"]), doc
    assert any("[linux/amd64]: the index entry's platform linux/amd64 is not its image's (linux/arm64" in p
               for p in doc["problems"]), doc
    # The whole layout too (its names are verified the same way).
    assert regfp("verify", str(layout), check=False).returncode == 1


# ---- diff ------------------------------------------------------------------------------------------

def test_diff_of_two_indexes_compares_platform_by_platform(built: Built, tmp_path: Path) -> None:
    proc = regfp("diff", built.ref(built.patch("stable")), built.ref(built.patch("next")), "--json", check=False)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["a"]["platforms"] == ["linux/amd64", "linux/arm64"] and not doc["identical"]
    by = {p["platform"]: p for p in doc["platforms"]}
    assert list(by) == ["linux/amd64", "linux/arm64"]
    stable, nxt = children(built.layout, built.patch("stable")), children(built.layout, built.patch("next"))
    for arch in ("amd64", "arm64"):
        one = by[f"linux/{arch}"]
        assert (one["change"], one["a"], one["b"]) == ("modified", stable[arch]["digest"], nxt[arch]["digest"])
        # Rebased onto another base: the base layer replaced, the app's layers shared; the base's
        # os-release is the file that differs.
        assert one["summary"]["layersRemoved"] == 1 and one["summary"]["layersAdded"] == 1
        assert one["summary"]["layersShared"] == 2
        assert [f["path"] for f in one["files"]] == ["etc/os-release"], one["files"]
    assert doc["summary"] == {"platformsSame": 0, "platformsModified": 2, "platformsAdded": 0, "platformsRemoved": 0}
    assert {c["field"] for c in doc["annotations"]} >= {"annotation[dev.regfp.channel]"}
    text = regfp("diff", built.ref(built.patch("stable")), built.ref(built.patch("next")), check=False).stdout
    assert "== linux/amd64: modified" in text and "== linux/arm64: modified" in text and "Platforms: 0 same" in text

    # --platform picks one platform of each: a plain image diff.
    picked = json.loads(regfp("diff", built.ref(built.patch("stable")), built.ref(built.patch("next")), "--json",
                              "--platform", "linux/arm64", check=False).stdout)
    assert "platforms" not in picked and picked["a"]["digest"] == stable["arm64"]["digest"]
    assert picked["b"]["digest"] == nxt["arm64"]["digest"]
    # The same index twice: identical, exit 0.
    same = regfp("diff", built.ref(built.build), built.ref(built.build), "--json")
    assert json.loads(same.stdout)["identical"]
    # An index against one image: the index's image for that image's platform.
    single = tmp_path / "single"
    regfp("copy", "--platform", "linux/arm64", built.ref(built.patch("next")), f"oci:{single}:one")
    against = json.loads(regfp("diff", built.ref(built.patch("next")), f"oci:{single}:one", "--json").stdout)
    assert against["identical"] and against["a"]["digest"] == nxt["arm64"]["digest"]


def test_diff_shows_a_platform_only_one_index_has(built: Built, tmp_path: Path) -> None:
    from regctl_fp.stores.base import read_index_images, write_index
    from regctl_fp.stores.layout import LayoutStore

    layout = tmp_path / "amd64only"
    regfp("copy", built.ref(built.build), f"oci:{layout}:both")
    with LayoutStore.open(layout) as store:
        images = read_index_images(store, store.resolve("both"))
        amd64 = {p: im for p, im in images.items() if p.architecture == "amd64"}
        store.set_names({"one": write_index(store, amd64, {})})
    doc = json.loads(regfp("diff", f"oci:{layout}:both", f"oci:{layout}:one", "--json", check=False).stdout)
    assert [(p["platform"], p["change"]) for p in doc["platforms"]] == [("linux/amd64", "same"),
                                                                       ("linux/arm64", "removed")]
    assert doc["platforms"][1]["b"] is None and not doc["identical"]
    # Against a single arm64 image, the amd64-only index has nothing to compare: exit 2, a clear error.
    regfp("copy", "--platform", "linux/arm64", f"oci:{layout}:both", f"oci:{layout}:arm")
    proc = regfp("diff", f"oci:{layout}:one", f"oci:{layout}:arm", check=False)
    assert proc.returncode == 2 and "without the other image's platform linux/arm64" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# ---- copy ------------------------------------------------------------------------------------------

def test_copy_moves_the_whole_index_or_one_platform_as_an_image(
        built: Built, registry: Registry, tmp_path: Path, tool_home: dict[str, str]) -> None:
    entry, _ = index_of(built.layout, built.patch("next"))
    kids = children(built.layout, built.patch("next"))
    remote = f"{registry.host}/mp-copy/{uuid.uuid4().hex[:8]}:next"
    pushed = regfp_json("copy", built.ref(built.patch("next")), remote)
    assert pushed["digest"] == entry["digest"] and pushed["mediaType"].endswith("image.index.v1+json")
    back = tmp_path / "back"
    pulled = regfp_json("copy", remote, f"oci:{back}:next")
    assert pulled["digest"] == entry["digest"]
    assert sorted(children(back, "next")) == ["amd64", "arm64"]
    assert regfp_json("verify", str(back))["ok"]

    # One platform out of the index, from the registry: a single image, and only its blobs travel.
    one = tmp_path / "one"
    picked = regfp_json("copy", "--platform", "linux/arm64", remote, f"oci:{one}:arm64")
    assert picked["digest"] == kids["arm64"]["digest"]
    assert picked["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    amd64_base = manifest_of(built.layout, kids["amd64"])["layers"][0]["digest"]
    assert not _blob(one, amd64_base).exists()
    assert not _blob(one, entry["digest"]).exists()
    rootfs = tmp_path / "rootfs"
    subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{one}:arm64", str(rootfs)], check=True,
                   capture_output=True, env=tool_home)
    assert elf_machine(rootfs / "bin/busybox") == "aarch64"
    assert run_arm64(rootfs, "/bin/busybox", "cat", "/etc/os-release") == "ID=test-os-2-arm64\n"
    # A platform the index lacks: an error naming the ones it has (exit 1, as test_cli has it), nothing written.
    proc = regfp("copy", "--platform", "linux/s390x", remote, f"oci:{tmp_path / 'none'}:x", check=False)
    assert proc.returncode == 1 and "it has: linux/amd64, linux/arm64" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "none").exists()


def test_a_skopeo_dir_holding_an_index_is_read_as_the_index(
        built: Built, tmp_path: Path, tool_home: dict[str, str]) -> None:
    """``skopeo copy --all ... dir:D`` keeps the whole index: inspect, verify, diff and copy see it, as
    they see it in a layout or a registry (not the host's platform alone)."""
    held = tmp_path / "skopeo-dir"
    subprocess.run([need("skopeo"), "copy", "-q", "--all", built.ref(built.build), f"dir:{held}"], check=True,
                   capture_output=True, env=tool_home, timeout=120)
    entry, _ = index_of(built.layout, built.build)
    kids = children(built.layout, built.build)
    shown = regfp_json("inspect", f"dir:{held}")
    assert shown["digest"] == entry["digest"] and shown["platforms"] == ["linux/amd64", "linux/arm64"]
    checked = regfp_json("verify", f"dir:{held}")
    assert checked["ok"] and checked["verified"] == [f"dir:{held} [linux/amd64]", f"dir:{held} [linux/arm64]"]
    assert json.loads(regfp("diff", f"dir:{held}", built.ref(built.build), "--json").stdout)["identical"]
    whole = regfp_json("copy", f"dir:{held}", f"oci:{tmp_path / 'out'}:all")
    assert whole["digest"] == entry["digest"] and sorted(children(tmp_path / "out", "all")) == ["amd64", "arm64"]
    one = regfp_json("copy", "--platform", "linux/arm64", f"dir:{held}", f"oci:{tmp_path / 'out'}:arm64")
    assert one["digest"] == kids["arm64"]["digest"]
    assert regfp_json("verify", str(tmp_path / "out"))["ok"]


# ---- --push, podman, skopeo, umoci ---------------------------------------------------------------

def test_push_sends_the_index_and_podman_pulls_the_arm64_image(
        built: Built, make_registry, tmp_path: Path, tool_home: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    reg: Registry = make_registry()
    project = tmp_path / "project"
    shutil.copytree(built.root, project, symlinks=True)
    recipe = project / "recipe.yaml"
    recipe.write_text(recipe.read_text() + f'push: {{prefix: "{reg.host}/acme"}}\n')
    result = regfp_json("build", str(recipe), "--only", "patch", "--push")
    ref = f"{reg.host}/acme/patch/src/{built.sha}:next"
    assert ref in result["pushed"]
    entry, _ = index_of(project / "out", built.patch("next"))
    kids = children(project / "out", built.patch("next"))
    assert entry["digest"] == index_of(built.layout, built.patch("next"))[0]["digest"]  # reproducible

    raw = subprocess.run([need("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         check=True, capture_output=True, env=tool_home, timeout=120).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == entry["digest"]
    assert [(m["platform"]["architecture"], m["digest"]) for m in json.loads(raw)["manifests"]] == [
        ("amd64", kids["amd64"]["digest"]), ("arm64", kids["arm64"]["digest"])]

    # podman, asked for arm64, selects the arm64 image of the index.
    short = Path(tmp_path_short := f"/tmp/regfp-mp-{uuid.uuid4().hex[:6]}")
    short.mkdir()
    try:
        pulled = podman(short, "pull", "--tls-verify=false", "--arch", "arm64", ref)
        assert pulled.returncode == 0, pulled.stderr
        shown = json.loads(podman(short, "image", "inspect", ref).stdout)[0]
        assert shown["Architecture"] == "arm64" and shown["Os"] == "linux", shown
        # podman records the index it resolved (Digest) and the arm64 manifest it took from it.
        assert shown["Digest"] == entry["digest"], shown
        assert f"{ref.rpartition(':')[0]}@{kids['arm64']['digest']}" in shown["RepoDigests"], shown
        assert not any(kids["amd64"]["digest"] in d for d in shown["RepoDigests"]), shown
    finally:
        shutil.rmtree(tmp_path_short, ignore_errors=True)

    # skopeo picks arm64 too; umoci unpacks an aarch64 busybox that prints channel next's os-release.
    out = tmp_path / "skopeo"
    subprocess.run([need("skopeo"), "copy", "--src-tls-verify=false", "--override-os", "linux", "--override-arch",
                    "arm64", f"docker://{ref}", f"oci:{out}:img"], check=True, capture_output=True, env=tool_home,
                   timeout=120)
    bundle = tmp_path / "bundle"
    subprocess.run([need("umoci"), "unpack", "--image", f"{out}:img", str(bundle)], check=True, capture_output=True,
                   env=tool_home)
    assert elf_machine(bundle / "rootfs/bin/busybox") == "aarch64"
    assert run_arm64(bundle / "rootfs", "/bin/busybox", "cat", "/etc/os-release") == "ID=test-os-2-arm64\n"
    assert (bundle / "rootfs/app/run.sh").read_bytes() == (built.root / "src/app/run.sh").read_bytes()


def test_a_pushed_index_goes_up_children_first_and_its_tag_last(built: Built, fault_proxy: FaultProxy,
                                                                registry: Registry) -> None:
    import httpx

    entry, _ = index_of(built.layout, built.patch("next"))
    kids = children(built.layout, built.patch("next"))
    repo = f"mp-order/{uuid.uuid4().hex[:8]}"
    # The index's own PUT fails: the command fails, and the tag was never moved (nothing names a
    # half-pushed index); the children are there by digest.
    fault_proxy.add(Fault("status", method="PUT", path=f"/v2/{repo}/manifests/{entry['digest']}", times=-1))
    proc = regfp("copy", built.ref(built.patch("next")), f"{fault_proxy.host}/{repo}:next", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    writes = _writes(fault_proxy)
    # Every blob before the first manifest, each platform's manifest before the index; no tag moved.
    assert _manifest_puts(writes) == [kids["amd64"]["digest"], kids["arm64"]["digest"], entry["digest"]], writes
    first_manifest = next(i for i, p in enumerate(writes) if "/manifests/" in p)
    assert first_manifest > 0 and all("/blobs/" in p for p in writes[:first_manifest])
    accept = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"}
    base = f"http://{registry.host}/v2/{repo}/manifests"
    assert httpx.head(f"{base}/next", headers=accept).status_code == 404
    assert all(httpx.head(f"{base}/{kids[a]['digest']}", headers=accept).status_code == 200 for a in kids)
    # Again without the fault: only the index and then the tag go up (the rest is there).
    fault_proxy.clear()
    regfp("copy", built.ref(built.patch("next")), f"{fault_proxy.host}/{repo}:next")
    assert _manifest_puts(_writes(fault_proxy)) == [entry["digest"], "next"]
    assert httpx.get(f"{base}/next", headers=accept).headers["docker-content-digest"] == entry["digest"]


def _writes(proxy: FaultProxy) -> list[str]:
    return [x.path.split("?")[0] for x in proxy.seen if x.method in ("PUT", "POST", "PATCH")]


def _manifest_puts(writes: list[str]) -> list[str]:
    """The manifests PUT, in order, each once (a failed PUT is retried)."""
    return list(dict.fromkeys(p.rsplit("/", 1)[1] for p in writes if "/manifests/" in p))


# ---- the remote cache ------------------------------------------------------------------------------

def _machine(template: Path, where: Path) -> tuple[Path, dict[str, str]]:
    """A separate checkout with its own empty caches."""
    shutil.copytree(template, where, symlinks=True, ignore=shutil.ignore_patterns("out"))
    home = where.parent / f"{where.name}-home"
    home.mkdir()
    return where, dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))


def _build(root: Path, env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run([sys.executable, "-m", "regctl_fp", "build", str(root / "recipe.yaml"), "--json",
                           "--only", "patch", *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_a_second_clone_gets_the_index_from_the_remote_cache(built: Built, make_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reg: Registry = make_registry()
    cache = f"{reg.host}/regfp-cache"
    a, env_a = _machine(built.root, tmp_path / "a")
    b, env_b = _machine(built.root, tmp_path / "b")
    first = _build(a, env_a, "--cache", cache)
    assert first["stats"]["remote"]["published"] > 0
    second = _build(b, env_b, "--cache", cache)
    assert second["stats"]["layersCompressed"] == 0 and all(i["cached"] for i in second["images"]), second
    assert second["stats"]["remote"]["hits"] > 0 and second["stats"]["remote"]["published"] == 0
    digests = {i["name"]: i["digest"] for i in second["images"]}
    assert digests == {i["name"]: i["digest"] for i in first["images"]}
    assert digests[built.build] == index_of(built.layout, built.build)[0]["digest"]
    assert index_of(b / "out", built.build)[0]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert regfp("verify", str(b / "out"), env=env_b).returncode == 0

    # The platform set is part of the key: the same recipe for amd64 alone is not the two-platform entry.
    c, env_c = _machine(built.root, tmp_path / "c")
    (c / "recipe.yaml").write_text(
        PROJECT.replace("[linux/amd64, linux/arm64]", "[linux/amd64]")
        .replace(', linux/arm64: "dir:bases/arm64-1"', "").replace(', linux/arm64: "dir:bases/arm64-2"', ""))
    third = _build(c, env_c, "--cache", cache)
    made = {i["name"]: i for i in third["images"]}
    assert not made[built.build]["cached"] and made[built.build]["digest"] != digests[built.build]
    assert sorted(children(c / "out", built.build)) == ["amd64"]
    # ...while its layers are the two-platform build's amd64 layers (only the key and index differ).
    alone = manifest_of(c / "out", children(c / "out", built.build)["amd64"])
    assert alone["layers"] == manifest_of(built.layout, children(built.layout, built.build)["amd64"])["layers"]


# ---- the two-platform demo -------------------------------------------------------------------------

def test_the_two_platform_demo_builds_an_index_per_stage_with_an_aarch64_base(
        tmp_path: Path, tool_home: dict[str, str]) -> None:
    """recipes/multiarch/multiarch.yaml as .ci/setup and .ci/run use it: the arm64 bases made into out/ by
    make-demo-bases.sh, then the build; here in a scratch repository holding the recipe and testdata/."""
    from gitrepo import GitRepo

    setup = (ROOT / ".ci/setup").read_text().splitlines()
    assert 'bash testdata/arm64/make-demo-bases.sh out "${REGFP_TEST_TOOLS_CACHE:-}" >/dev/null' in setup
    assert ".venv/bin/regfp build recipes/multiarch/multiarch.yaml >/dev/null" in (ROOT / ".ci/run").read_text()
    # In a directory of its own: recipes/app.yaml stays the recipe found when none is named.
    assert sorted(p.name for p in (ROOT / "recipes").glob("*.yaml")) == ["app.yaml"]
    import jsonschema
    import yaml

    schema = json.loads(regfp("schema").stdout)
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load((ROOT / "recipes/multiarch/multiarch.yaml")
                                                                    .read_text()))
    # README's example is this recipe, in short.
    readme = (ROOT / "README.md").read_text().split("**The platform model.**", 1)[1]
    example = yaml.safe_load(readme.split("```yaml\n", 1)[1].split("```", 1)[0])
    demo = yaml.safe_load((ROOT / "recipes/multiarch/multiarch.yaml").read_text())
    for key in ("name", "platforms", "patch"):
        assert example[key] == demo[key], key
    assert example["source"] == demo["source"] and example["build"]["base"] == demo["build"]["base"]
    repo = GitRepo.init(tmp_path / "repo")
    shutil.copytree(ROOT / "testdata", repo.path / "testdata", symlinks=True)
    (repo.path / "recipes/multiarch").mkdir(parents=True)
    shutil.copy2(ROOT / "recipes/multiarch/multiarch.yaml", repo.path / "recipes/multiarch/multiarch.yaml")
    sha = repo.commit("demo")
    wrapper = tmp_path / "regfp"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m regctl_fp "$@"\n')
    wrapper.chmod(0o755)
    subprocess.run(["bash", "testdata/arm64/make-demo-bases.sh", "out", str(TOOLS_CACHE)], cwd=repo.path,
                   check=True, capture_output=True, timeout=300, env=dict(os.environ, REGFP=str(wrapper)))
    report = regfp_json("build", str(repo.path / "recipes/multiarch/multiarch.yaml"))
    layout = repo.path / "out"
    names = [f"build/hello-multiarch:{sha}", f"patch/hello-multiarch/{sha}:stable", f"patch/hello-multiarch/{sha}:next"]
    assert [i["name"] for i in report["images"] if not i["name"].startswith("bases/")] == names, report
    for name in names:
        kids = children(layout, name)
        assert sorted(kids) == ["amd64", "arm64"], name
        amd64, arm64 = manifest_of(layout, kids["amd64"]), manifest_of(layout, kids["arm64"])
        assert amd64["layers"][1:] == arm64["layers"][1:]  # the app's layers: one blob each, shared
        assert manifest_of(layout, arm64["config"])["architecture"] == "arm64"
    assert regfp_json("verify", str(layout))["ok"]
    # What an arm64 client gets from channel next: an aarch64 busybox on demo OS 3, and the app.
    out = tmp_path / "arm64"
    subprocess.run([need("skopeo"), "copy", "--override-os", "linux", "--override-arch", "arm64",
                    f"oci:{layout}:patch/hello-multiarch/{sha}:next", f"oci:{out}:img"], check=True,
                   capture_output=True, env=tool_home, timeout=120)
    rootfs = tmp_path / "rootfs"
    subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{out}:img", str(rootfs)], check=True,
                   capture_output=True, env=tool_home)
    assert elf_machine(rootfs / "bin/busybox") == "aarch64"
    assert run_arm64(rootfs, "/bin/busybox", "cat", "/etc/os-release") == \
        (ROOT / "testdata/bases/os-3/etc/os-release").read_text()
    assert (rootfs / "app/run.sh").read_bytes() == (ROOT / "testdata/apps/hello/run.sh").read_bytes()
