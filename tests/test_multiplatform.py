"""Multi-platform recipes (issue 18): one recipe, linux/amd64 and linux/arm64, the build an image index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TOOLS_CACHE, elf_machine, make_busybox_rootfs, need, regfp, regfp_json, run_arm64, run_image
from gitrepo import GitRepo
from pki import make_ca

from regctl_fp.errors import RecipeError
from regctl_fp.oci.descriptor import Platform
from regctl_fp.recipe.load import LoadedRecipe, load_recipe, recipe_schema
from regctl_fp.recipe.platforms import Refs, same_platform


def test_arm64_base_is_aarch64_busybox_that_runs_under_qemu(arm64_rootfs: Path) -> None:
    assert elf_machine(arm64_rootfs / "bin/busybox") == "aarch64"
    assert "BusyBox arm64 test base" in run_arm64(arm64_rootfs, "/bin/busybox", "cat", "/etc/os-release")
    assert run_arm64(arm64_rootfs, "/bin/busybox", "uname", "-m").strip() == "aarch64"


# ---- the recipe language ---------------------------------------------------------------------------

MULTI = """\
regfp: 1
name: hello
platforms: [linux/amd64, linux/arm64]
source: {git: src, ref: main}
build:
  base: stable
  copy: [{from: app, to: /app}]
patch:
  channels:
    stable: {linux/amd64: "dir:amd64-1", linux/arm64: "dir:arm64-1"}
    next: "oci:bases:os"
"""


def _load(tmp_path: Path, text: str) -> LoadedRecipe:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    return load_recipe(recipe)


def test_platforms_and_per_platform_references_load(tmp_path: Path) -> None:
    lr = _load(tmp_path, MULTI)
    assert lr.recipe.platforms == ("linux/amd64", "linux/arm64")
    refs = lr.base_refs()
    assert refs.single is None
    assert refs.for_platform(Platform("linux", "arm64", "v8")) == "dir:arm64-1"  # arm64 is arm64/v8
    assert refs.for_platform(Platform("linux", "amd64")) == "dir:amd64-1"
    assert refs.for_platform(Platform("linux", "s390x")) is None
    assert lr.channel_refs("next").for_platform(Platform("linux", "arm64")) == "oci:bases:os"
    # What keys and labels record: the reference itself, or the mapping as canonical JSON.
    assert lr.channel_ref("next") == "oci:bases:os"
    assert lr.base_ref() == '{"linux/amd64":"dir:amd64-1","linux/arm64":"dir:arm64-1"}'


def test_variants_are_compared_as_the_image_spec_says() -> None:
    arm64, arm64_v8 = Platform.parse("linux/arm64"), Platform.parse("linux/arm64/v8")
    arm_v7, arm_v6 = Platform.parse("linux/arm/v7"), Platform.parse("linux/arm/v6")
    assert same_platform(arm64, arm64_v8)
    assert not same_platform(arm_v7, arm_v6)
    assert not same_platform(arm_v7, Platform.parse("linux/arm"))  # a variant asked for is not "any"
    refs = Refs.of({"linux/arm/v6": "a", "linux/arm/v7": "b"})
    assert refs.for_platform(arm_v7) == "b" and refs.for_platform(arm_v6) == "a"


BAD_MULTI = [
    ("misspelt architecture", MULTI.replace("[linux/amd64, linux/arm64]", "[linux/amd64, linux/aarch64]"), 3,
     "unknown architecture 'aarch64'; did you mean linux/arm64?"),
    ("not os/arch", MULTI.replace("[linux/amd64, linux/arm64]", "[amd64]"), 3, "is not os/architecture"),
    ("a platform twice", MULTI.replace("[linux/amd64, linux/arm64]", "[linux/arm64, linux/amd64, linux/arm64/v8]"),
     3, "linux/arm64/v8 is listed twice"),
    ("mapping lacks a listed platform", MULTI.replace(', linux/arm64: "dir:arm64-1"', ""), 10,
     "names no image for linux/arm64 (listed in platforms)"),
    ("mapping names an unlisted platform", MULTI.replace('linux/arm64: "dir:arm64-1"',
                                                         'linux/arm64: "dir:a", linux/s390x: "dir:b"'), 10,
     "linux/s390x is not one of the recipe's platforms"),
    ("per-platform value not a reference", MULTI.replace('"dir:arm64-1"', "stable"), 10,
     "unknown channel 'stable'"),
    ("platform key misspelt in a mapping", MULTI.replace("linux/arm64:", "linux/x86_64:"), 10,
     "did you mean linux/amd64?"),
    ("base mapping disagrees with a channel mapping", MULTI.replace("platforms: [linux/amd64, linux/arm64]\n", "")
     .replace("base: stable", 'base: {linux/amd64: "dir:x"}'), 9, "linux/arm64 is not one of the recipe's"),
]


@pytest.mark.parametrize(("what", "text", "line", "words"), BAD_MULTI, ids=[b[0] for b in BAD_MULTI])
def test_bad_platforms_fail_with_file_and_line(tmp_path: Path, what: str, text: str, line: int,
                                               words: str) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe)
    shown = str(caught.value)
    assert f"{recipe}:{line}:" in shown and words in shown, shown


def test_bad_platform_is_exit_2_from_the_cli(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(BAD_MULTI[0][1])
    proc = regfp("build", str(recipe), check=False)
    assert proc.returncode == 2 and f"{recipe}:3:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_schema_describes_platforms_and_per_platform_bases() -> None:
    import jsonschema

    schema = recipe_schema()
    props = schema["$defs"]["Recipe"]["properties"]
    assert "platform" in props["platforms"]["description"]
    assert props["platforms"]["items"]["pattern"]
    base = schema["$defs"]["Build"]["properties"]["base"]
    assert "per-platform" in base["description"] or "platform ->" in base["description"]
    doc = yaml.safe_load(MULTI)
    jsonschema.validate(doc, schema)
    doc["platforms"] = ["linux"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


# ---- build -----------------------------------------------------------------------------------------

PROJECT = """\
regfp: 1
name: hello
platforms: [linux/amd64, linux/arm64]
source: {git: src, ref: main, subdir: app}
build:
  base: stable
  dependencies: [requirements.lock]
  copy: [{from: ., to: /app}]
  entrypoint: [/bin/sh, /app/run.sh]
  env: {GREETING: hi}
patch:
  channels:
    stable: {linux/amd64: "dir:bases/amd64-1", linux/arm64: "dir:bases/arm64-1"}
    next: {linux/amd64: "dir:bases/amd64-2", linux/arm64: "dir:bases/arm64-2"}
output: {layout: out}
"""


def make_multi_project(root: Path, arm64_rootfs: Path) -> str:
    """A Git app and two OS channels, each an amd64 and an arm64 busybox tree naming itself; the commit."""
    repo = GitRepo.init(root / "src")
    repo.write("app/run.sh", "#!/bin/sh\necho \"hello $GREETING on $(head -1 /etc/os-release)\"\n", 0o755)
    repo.write("app/requirements.lock", "dep==1.0\n")
    sha = repo.commit("first")
    for n in (1, 2):
        make_busybox_rootfs(root / "bases" / f"amd64-{n}")
        shutil.copytree(arm64_rootfs, root / "bases" / f"arm64-{n}", symlinks=True)
        for arch in ("amd64", "arm64"):
            (root / "bases" / f"{arch}-{n}" / "etc" / "os-release").write_text(f"ID=test-os-{n}-{arch}\n")
    (root / "recipe.yaml").write_text(PROJECT)
    return sha


def index_of(layout: Path, name: str) -> tuple[dict, dict]:
    """The index entry of ``name`` in the layout, and the image index it points at."""
    top = json.loads((layout / "index.json").read_text())
    entry = next(d for d in top["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == name)
    algo, hexd = entry["digest"].split(":")
    return entry, json.loads((layout / "blobs" / algo / hexd).read_bytes())


def manifest_of(layout: Path, desc: dict) -> dict:
    algo, hexd = desc["digest"].split(":")
    return json.loads((layout / "blobs" / algo / hexd).read_bytes())


def only_arch(layout: Path, name: str, arch: str, dest: Path, env: dict[str, str]) -> None:
    """skopeo's copy of one platform's image of ``name`` into its own layout (as a user would pull it)."""
    subprocess.run([need("skopeo"), "copy", "--override-os", "linux", "--override-arch", arch,
                    f"oci:{layout}:{name}", f"oci:{dest}:img"], check=True, capture_output=True, env=env,
                   timeout=120)


def test_two_platform_build_is_an_index_of_both_sharing_the_app_layer(
        tmp_path: Path, arm64_rootfs: Path, tool_env: dict[str, str]) -> None:
    sha = make_multi_project(tmp_path, arm64_rootfs)
    report = regfp_json("build", str(tmp_path / "recipe.yaml"), "--only", "build")
    name = f"build/src:{sha}"
    built = next(i for i in report["images"] if i["name"] == name)
    layout = tmp_path / "out"
    entry, index = index_of(layout, name)
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json" and entry["digest"] == built["digest"]
    platforms = [(d["platform"]["os"], d["platform"]["architecture"]) for d in index["manifests"]]
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]
    # The index is what other tools see too.
    raw = subprocess.run([need("skopeo"), "inspect", "--raw", f"oci:{layout}:{name}"], check=True,
                         capture_output=True, text=True, env=tool_env).stdout
    assert [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]] == ["amd64", "arm64"]
    amd64, arm64 = (manifest_of(layout, d) for d in index["manifests"])
    # Base layer differs per platform; the Git tree's layers (dependencies, app) are one blob each.
    assert amd64["layers"][0]["digest"] != arm64["layers"][0]["digest"]
    assert [la["digest"] for la in amd64["layers"][1:]] == [la["digest"] for la in arm64["layers"][1:]]
    assert len(amd64["layers"]) == 3
    for image, arch in ((amd64, "amd64"), (arm64, "arm64")):
        assert manifest_of(layout, image["config"])["architecture"] == arch
        assert image["annotations"]["org.opencontainers.image.base.name"] == f"dir:bases/{arch}-1"

    # The arm64 image, as skopeo selects it: an aarch64 busybox that prints its os-release under qemu.
    only_arch(layout, name, "arm64", tmp_path / "arm64", tool_env)
    rootfs = tmp_path / "arm64-rootfs"
    subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{tmp_path / 'arm64'}:img", str(rootfs)],
                   check=True, capture_output=True, env=tool_env)
    assert elf_machine(rootfs / "bin/busybox") == "aarch64"
    assert run_arm64(rootfs, "/bin/busybox", "cat", "/etc/os-release") == "ID=test-os-1-arm64\n"
    assert (rootfs / "app/run.sh").read_bytes() == (tmp_path / "src/app/run.sh").read_bytes()
    # The amd64 one runs under runc.
    only_arch(layout, name, "amd64", tmp_path / "amd64", tool_env)
    ran = run_image(tmp_path / "amd64", "img", tmp_path / "bundle", tool_env)
    assert ran.returncode == 0 and ran.stdout == "hello hi on ID=test-os-1-amd64\n", ran.stderr

    # Unchanged inputs: reused, same digest; a second clone of the project builds the same index.
    again = regfp_json("build", str(tmp_path / "recipe.yaml"), "--only", "build")
    assert next(i for i in again["images"] if i["name"] == name)["cached"]
    clone = tmp_path / "clone"
    clone.mkdir()
    for part in ("src", "bases"):
        shutil.copytree(tmp_path / part, clone / part, symlinks=True)
    shutil.copy2(tmp_path / "recipe.yaml", clone / "recipe.yaml")
    other = regfp_json("build", str(clone / "recipe.yaml"), "--only", "build")
    assert next(i for i in other["images"] if i["name"] == name)["digest"] == built["digest"]


def test_run_step_layer_is_shared_unless_the_step_runs_per_platform(
        tmp_path: Path, arm64_rootfs: Path, tool_env: dict[str, str]) -> None:
    sha = make_multi_project(tmp_path, arm64_rootfs)
    log = tmp_path / "runs.log"
    step = (f"  run: {{command: 'echo \"$TARGETPLATFORM|$TARGETARCH\" > target.txt; echo ran >> {log}', "
            "outputs: [{from: target.txt, to: /app/target.txt}]{extra}}\n")
    text = (tmp_path / "recipe.yaml").read_text()
    for extra, out in (("", "out"), (", perPlatform: true", "out-pp")):
        recipe = tmp_path / f"recipe-{out}.yaml"
        recipe.write_text(text.replace("  env: {GREETING: hi}\n", "  env: {GREETING: hi}\n" + step.replace(
            "{extra}", extra)).replace("output: {layout: out}", f"output: {{layout: {out}}}"))
        regfp_json("build", str(recipe), "--only", "build")
    name = f"build/src:{sha}"
    runs = log.read_text().splitlines()
    assert runs == ["ran"] * 3, runs  # once for the shared step, once per platform for the other
    for out, shared in (("out", True), ("out-pp", False)):
        amd64, arm64 = (manifest_of(tmp_path / out, d) for d in index_of(tmp_path / out, name)[1]["manifests"])
        assert len(amd64["layers"]) == len(arm64["layers"]) == 4
        assert amd64["layers"][1:3] == arm64["layers"][1:3]  # dependencies and app: one blob each, always
        assert (amd64["layers"][3] == arm64["layers"][3]) is shared
        for arch in ("amd64", "arm64"):
            rootfs = unpack_arch(tmp_path / out, name, arch, tmp_path / f"x-{out}", tool_env)
            want = "|\n" if shared else f"linux/{arch}|{arch}\n"
            assert (rootfs / "app/target.txt").read_text() == want


def test_a_per_platform_step_of_a_single_platform_recipe_builds_for_the_base_platform(
        tmp_path: Path, tool_env: dict[str, str]) -> None:
    from project import make_project

    make_project(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("  workdir: /app\n", "  workdir: /app\n  run: {command: 'echo "
                                                 "\"$TARGETPLATFORM|$TARGETARCH\" > t.txt', outputs: "
                                                 "[{from: t.txt, to: /app/t.txt}], perPlatform: true}\n"))
    [built] = regfp_json("build", str(recipe), "--only", "build")["images"]  # type: ignore[index]
    rootfs = tmp_path / "rootfs"
    subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{tmp_path / 'out'}:{built['name']}", str(rootfs)],
                   check=True, capture_output=True, env=tool_env)
    assert (rootfs / "app/t.txt").read_text() == "linux/amd64|amd64\n"


# ---- patch -----------------------------------------------------------------------------------------

def _children(layout: Path, name: str) -> dict[str, dict]:
    """Each platform's image descriptor of the index ``name``, by architecture."""
    return {d["platform"]["architecture"]: d for d in index_of(layout, name)[1]["manifests"]}


def test_two_platform_patch_rebases_each_platform_and_only_the_moved_one(
        tmp_path: Path, arm64_rootfs: Path, tool_env: dict[str, str]) -> None:
    sha = make_multi_project(tmp_path, arm64_rootfs)
    first = regfp_json("build", str(tmp_path / "recipe.yaml"), "--only", "patch")
    layout = tmp_path / "out"
    build = _children(layout, f"build/src:{sha}")
    stable, nxt = (_children(layout, f"patch/src/{sha}:{c}") for c in ("stable", "next"))
    assert sorted(nxt) == ["amd64", "arm64"] and all(d.get("platform") for d in nxt.values())
    assert {i["name"] for i in first["images"]} >= {f"patch/src/{sha}:stable", f"patch/src/{sha}:next"}
    for arch in ("amd64", "arm64"):
        built, patched = manifest_of(layout, build[arch]), manifest_of(layout, nxt[arch])
        assert patched["annotations"]["org.opencontainers.image.base.name"] == f"dir:bases/{arch}-2"
        assert patched["layers"][1:] == built["layers"][1:]  # the app's layers are not touched by a rebase
        assert manifest_of(layout, patched["config"])["architecture"] == arch
    assert manifest_of(layout, nxt["amd64"])["layers"][-1] == manifest_of(layout, nxt["arm64"])["layers"][-1]
    # The arm64 image on channel next: aarch64 busybox, next's arm64 os-release.
    only_arch(layout, f"patch/src/{sha}:next", "arm64", tmp_path / "arm64", tool_env)
    rootfs = tmp_path / "arm64-rootfs"
    subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{tmp_path / 'arm64'}:img", str(rootfs)],
                   check=True, capture_output=True, env=tool_env)
    assert elf_machine(rootfs / "bin/busybox") == "aarch64"
    assert run_arm64(rootfs, "/bin/busybox", "cat", "/etc/os-release") == "ID=test-os-2-arm64\n"

    # Only next's arm64 base changes: only next is re-patched, and within it only arm64's image moves.
    (tmp_path / "bases/arm64-2/etc/os-release").write_text("ID=test-os-2-arm64-fixed\n")
    again = regfp_json("build", str(tmp_path / "recipe.yaml"), "--only", "patch")
    made = {i["name"]: i for i in again["images"] if not i["cached"]}
    assert list(made) == [f"patch/src/{sha}:next"], again
    assert "moved for linux/arm64" in made[f"patch/src/{sha}:next"]["reason"]
    assert "amd64" not in made[f"patch/src/{sha}:next"]["reason"]
    after = _children(layout, f"patch/src/{sha}:next")
    assert after["amd64"]["digest"] == nxt["amd64"]["digest"]
    assert after["arm64"]["digest"] != nxt["arm64"]["digest"]
    assert _children(layout, f"patch/src/{sha}:stable") == stable


def test_a_channel_without_a_requested_platform_is_a_plan_time_error(tmp_path: Path, arm64_rootfs: Path) -> None:
    make_multi_project(tmp_path, arm64_rootfs)
    # An amd64-only image as channel next: one image of one platform.
    regfp("copy", f"dir:{tmp_path / 'bases/amd64-2'}", f"oci:{tmp_path / 'amd64only'}:os", "--platform",
          "linux/amd64")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(PROJECT.replace('next: {linux/amd64: "dir:bases/amd64-2", linux/arm64: "dir:bases/arm64-2"}',
                                      'next: "oci:amd64only:os"'))
    for command in ("plan", "build"):
        proc = regfp(command, str(recipe), check=False)
        assert proc.returncode == 2, proc.stderr
        assert f"{recipe}:14:" in proc.stderr and "linux/arm64" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


# ---- rollout, environments, debug -----------------------------------------------------------------

STAGES = """\
rollouts: {channel: stable, keep: 3, cohorts: {buckets: 4, canary: 50%}}
environments:
  - location: us-east
    environment: prod
    delta: 0
    env: {LOG_LEVEL: info}
    files: {/etc/hello/config.yaml: files/prod.yaml}
    caCerts: [pki/corp-root.pem]
    polyfills: ["dir:apm"]
    identity: {ca: pki/id-ca.pem, key: pki/id-ca.key, ttl: 30d, trustDomain: test.example}
  - {location: eu-west, environment: dev, delta: 1}
"""
NOW = "2026-06-10T12:00:00Z"


def make_stages_project(root: Path, arm64_rootfs: Path) -> tuple[GitRepo, str]:
    """The two-platform project with a rollout, an environment carrying files, a CA bundle, a polyfill
    and an identity, and a second environment one release behind; its Git repository and commit."""
    sha = make_multi_project(root, arm64_rootfs)
    make_ca(root / "pki", "id-ca")
    make_ca(root / "pki", "corp-root")
    (root / "files").mkdir()
    (root / "files/prod.yaml").write_text("greeting: hello prod\n")
    (root / "apm/opt/apm").mkdir(parents=True)
    (root / "apm/opt/apm/agent.sh").write_text("#!/bin/sh\necho apm\n")
    recipe = root / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("output:", STAGES + "output:"))
    return GitRepo(root / "src"), sha


def names_in(layout: Path) -> dict[str, str]:
    top = json.loads((layout / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in top["manifests"]}


def skopeo_raw(layout: Path, name: str, env: dict[str, str]) -> dict:
    raw = subprocess.run([need("skopeo"), "inspect", "--raw", f"oci:{layout}:{name}"], check=True,
                         capture_output=True, text=True, env=env).stdout
    return json.loads(raw)  # type: ignore[no-any-return]


def unpack_arch(layout: Path, name: str, arch: str, work: Path, env: dict[str, str]) -> Path:
    """The rootfs of ``arch``'s image of ``name``, as skopeo selects it and umoci unpacks it."""
    work.mkdir(exist_ok=True)
    only_arch(layout, name, arch, work / f"{arch}-layout", env)
    rootfs = work / f"{arch}-rootfs"
    subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{work / f'{arch}-layout'}:img", str(rootfs)],
                   check=True, capture_output=True, env=env)
    return rootfs


def test_two_platform_recipe_rolls_out_and_makes_environments_as_indexes(
        tmp_path: Path, arm64_rootfs: Path, tool_env: dict[str, str]) -> None:
    repo, sha = make_stages_project(tmp_path, arm64_rootfs)
    recipe = tmp_path / "recipe.yaml"
    regfp_json("build", str(recipe), "--now", NOW)
    layout = tmp_path / "out"
    prod, dev = "us-east.prod/app/hello", "eu-west.dev/app/hello"
    named = names_in(layout)
    # The release is the stable channel's patch index; n-0, the cohorts and :live point at indexes.
    assert named["rollouts/hello:r1"] == named[f"patch/src/{sha}:stable"]
    for name in (f"build/src:{sha}", f"patch/src/{sha}:stable", "rollouts/hello:r1", "rollouts/hello:n-0",
                 "rollouts/hello:cohort-0", "rollouts/hello:cohort-3", f"{prod}:live", f"{prod}:r1"):
        assert index_of(layout, name)[0]["mediaType"] == "application/vnd.oci.image.index.v1+json", name
        assert sorted(_children(layout, name)) == ["amd64", "arm64"], name
        raw = skopeo_raw(layout, name, tool_env)
        assert [m["platform"]["architecture"] for m in raw["manifests"]] == ["amd64", "arm64"], name
    assert f"{dev}:live" not in named  # one release behind: nothing yet

    # Environment layers are the same blobs on both platforms: the polyfill's and the generated one
    # (files, CA bundle, identity: one certificate for the environment, not one per platform).
    env_images = {arch: manifest_of(layout, d) for arch, d in _children(layout, f"{prod}:live").items()}
    release = {arch: manifest_of(layout, d) for arch, d in _children(layout, "rollouts/hello:r1").items()}
    for arch in ("amd64", "arm64"):
        assert env_images[arch]["layers"][:-2] == release[arch]["layers"]
        assert env_images[arch]["annotations"]["dev.regfp.stage"] == "environment"
        assert manifest_of(layout, env_images[arch]["config"])["architecture"] == arch
    assert env_images["amd64"]["layers"][-2:] == env_images["arm64"]["layers"][-2:]
    assert env_images["amd64"]["layers"][0] != env_images["arm64"]["layers"][0]

    # The arm64 environment image: an aarch64 busybox printing its os-release under qemu, with the files.
    arm = unpack_arch(layout, f"{prod}:live", "arm64", tmp_path / "x", tool_env)
    assert elf_machine(arm / "bin/busybox") == "aarch64"
    assert run_arm64(arm, "/bin/busybox", "cat", "/etc/os-release") == "ID=test-os-1-arm64\n"
    assert (arm / "etc/hello/config.yaml").read_text() == "greeting: hello prod\n"
    amd = unpack_arch(layout, f"{prod}:live", "amd64", tmp_path / "x", tool_env)
    for name in ("tls.crt", "ca.crt"):
        path = f"var/run/secrets/regfp/identity/{name}"
        assert (arm / path).read_bytes() == (amd / path).read_bytes()
    # The amd64 one runs under runc, with the environment's variables.
    only_arch(layout, f"{prod}:live", "amd64", tmp_path / "amd64-env", tool_env)
    ran = run_image(tmp_path / "amd64-env", "img", tmp_path / "bundle", tool_env,
                    args=["/bin/sh", "-c", "/app/run.sh; echo LOG_LEVEL=$LOG_LEVEL"])
    assert ran.returncode == 0 and ran.stdout == "hello hi on ID=test-os-1-amd64\nLOG_LEVEL=info\n", ran.stderr

    # A second clone of the project builds the same digest for every name.
    clone = tmp_path / "clone"
    clone.mkdir()
    for part in ("src", "bases", "pki", "files", "apm"):
        shutil.copytree(tmp_path / part, clone / part, symlinks=True)
    shutil.copy2(recipe, clone / "recipe.yaml")
    regfp_json("build", str(clone / "recipe.yaml"), "--now", NOW)
    assert names_in(clone / "out") == named

    # A second commit cuts r2; the environment one behind gets r1; a yank of r2 moves n-0 back to r1.
    repo.write("app/run.sh", "#!/bin/sh\necho \"v2 $GREETING on $(head -1 /etc/os-release)\"\n", 0o755)
    repo.commit("v2")
    regfp_json("build", str(recipe), "--now", NOW)
    named = names_in(layout)
    assert named["rollouts/hello:n-0"] == named["rollouts/hello:r2"] != named["rollouts/hello:r1"]
    assert sorted(_children(layout, f"{dev}:live")) == ["amd64", "arm64"]
    assert index_of(layout, f"{dev}:live")[1]["annotations"]["dev.regfp.release"] == "r1"
    yanked = regfp_json("rollout", str(recipe), "--yank", "r2", "--now", NOW)
    assert [r["yanked"] for r in yanked["releases"]] == [True, False]  # type: ignore[index]
    after = names_in(layout)
    assert after["rollouts/hello:n-0"] == named["rollouts/hello:r1"] and "rollouts/hello:n-1" not in after
    assert after[f"{prod}:live"] == named[f"{prod}:r1"]
    ledger = index_of(layout, "rollouts/hello:ledger")[1]
    assert [m["mediaType"] for m in ledger["manifests"]] == ["application/vnd.oci.image.index.v1+json"] * 2
    # Each platform's image names its own base; the ledger entry of an index names none (not an empty one).
    assert all("org.opencontainers.image.base.digest" not in m["annotations"] for m in ledger["manifests"])



def test_debug_image_takes_one_platform_of_a_multi_platform_release(
        tmp_path: Path, arm64_rootfs: Path, tool_env: dict[str, str]) -> None:
    from test_debug import keypair, make_tools

    _repo, sha = make_stages_project(tmp_path, arm64_rootfs)
    make_tools(tmp_path / "tools")  # this machine's busybox and dropbear: amd64 programs
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("output:", 'debug: {tools: "dir:tools", environment: dev}\noutput:'))
    regfp_json("build", str(recipe), "--now", NOW)
    _, pub = keypair(tmp_path, "dev")
    layout = tmp_path / "out"
    patched = _children(layout, f"patch/src/{sha}:stable")
    # Default: the host's platform (amd64 here), as one image, on the amd64 image of the patch index.
    host = regfp_json("debug-image", str(recipe), "--ssh-key", str(pub), "--now", NOW)
    assert host["platform"] == "linux/amd64" and host["parent"] == patched["amd64"]["digest"]  # type: ignore[index]
    entry, image = index_of(layout, host["name"])  # type: ignore[index]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest_of(layout, image["config"])["architecture"] == "amd64"

    # arm64 with tools built for amd64: a clear error, nothing moved.
    before = names_in(layout)
    refused = regfp("debug-image", str(recipe), "--ssh-key", str(pub), "--platform", "linux/arm64", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "/usr/sbin/dropbear is a program for amd64" in refused.stderr and "linux/arm64" in refused.stderr
    missing = regfp("debug-image", str(recipe), "--ssh-key", str(pub), "--platform", "linux/s390x", check=False)
    assert missing.returncode == 2, missing.stderr
    assert "has no image for linux/s390x (it has: linux/amd64, linux/arm64)" in missing.stderr
    assert names_in(layout) == before

    # arm64 tools (Debian's dropbear-bin:arm64): release r1's arm64 image gets an arm64 debug image.
    tools = tmp_path / "tools-arm64"
    done = subprocess.run(["bash", str(ROOT / "testdata/arm64/make-tools.sh"), str(tools), str(TOOLS_CACHE)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"no arm64 dropbear: {done.stderr.strip()}") if not os.environ.get("REGFP_REQUIRE_TOOLS") \
            else pytest.fail(done.stderr)
    regfp("copy", f"dir:{tools}", f"oci:{tmp_path / 'arm-tools'}:debug", "--platform", "linux/arm64")
    recipe.write_text(recipe.read_text().replace('tools: "dir:tools"', 'tools: "oci:arm-tools:debug"'))
    arm = regfp_json("debug-image", str(recipe), "--ssh-key", str(pub), "--platform", "linux/arm64",
                     "--release", "r1", "--now", NOW)
    release = _children(layout, "rollouts/hello:r1")
    assert arm["platform"] == "linux/arm64" and arm["parent"] == release["arm64"]["digest"]  # type: ignore[index]
    rootfs = tmp_path / "debug-arm64"
    subprocess.run([need("umoci"), "raw", "unpack", "--image", f"{layout}:{arm['name']}", str(rootfs)],  # type: ignore[index]
                   check=True, capture_output=True, env=tool_env)
    assert elf_machine(rootfs / "bin/busybox") == elf_machine(rootfs / "usr/sbin/dropbear") == "aarch64"
    assert run_arm64(rootfs, "/bin/busybox", "cat", "/etc/os-release") == "ID=test-os-1-arm64\n"
    assert (rootfs / "app/run.sh").is_file() and (rootfs / "root/.ssh/authorized_keys").read_text().startswith(
        pub.read_text().split()[0])
    sshd = subprocess.run([need("qemu-aarch64-static"), "-L", str(rootfs), str(rootfs / "usr/sbin/dropbear"), "-V"],
                          capture_output=True, text=True, timeout=60)
    assert "Dropbear v" in sshd.stderr + sshd.stdout, sshd
    wrong = regfp("debug-image", str(recipe), "--ssh-key", str(pub), "--platform", "linux/amd64", check=False)
    assert wrong.returncode == 2 and "the tools image is linux/arm64" in wrong.stderr, wrong.stderr


def test_elf_architecture_of_real_programs(arm64_rootfs: Path, busybox_rootfs: Path) -> None:
    from regctl_fp.stages.debug import elf_architecture

    assert elf_architecture((arm64_rootfs / "bin/busybox").read_bytes()[:64]) == "arm64"
    assert elf_architecture((busybox_rootfs / "bin/busybox").read_bytes()[:64]) == "amd64"
    assert elf_architecture(b"#!/bin/sh\necho not ELF\n") is None
    assert elf_architecture(b"\x7fELF") is None  # cut short: no header to read


def test_a_polyfill_without_an_image_for_a_platform_is_an_error_before_anything_is_made(
        tmp_path: Path, arm64_rootfs: Path) -> None:
    make_stages_project(tmp_path, arm64_rootfs)
    regfp("copy", f"dir:{tmp_path / 'apm'}", f"oci:{tmp_path / 'apm-amd64'}:apm", "--platform", "linux/amd64")
    recipe = tmp_path / "recipe.yaml"
    text = recipe.read_text().replace('polyfills: ["dir:apm"]', 'polyfills: ["oci:apm-amd64:apm"]')
    recipe.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "polyfills" in s)
    for command in ("plan", "build"):
        proc = regfp(command, str(recipe), check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{recipe}:{line}:" in proc.stderr and "not linux/arm64" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


# ---- matrix and work -------------------------------------------------------------------------------

UNITS = """\
regfp: 1
name: units
matrix:
  - name: grid
    axes:
      base: {os: {linux/amd64: "dir:m/os-amd64", linux/arm64: "dir:m/os-arm64"}}
      runtime: {r1: "dir:m/rt1", r2: "dir:m/rt2"}
      model: {m1: "dir:m/model1", m2: "dir:m/model2"}
    entrypoint: runtime
work:
  - {name: jobs, root: items, items: ["*.txt"], chunks: 2, base: {linux/amd64: "dir:m/os-amd64",
     linux/arm64: "dir:m/os-arm64"}}
output: {layout: out}
"""


def make_units_project(root: Path, arm64_rootfs: Path) -> Path:
    """A 1x2x2 matrix over an OS axis given per platform (amd64 and arm64 busybox trees) and dir: runtimes
    and models (platform-neutral data), and six work items on the same per-platform base; the recipe."""
    m = root / "m"
    make_busybox_rootfs(m / "os-amd64")
    shutil.copytree(arm64_rootfs, m / "os-arm64", symlinks=True)
    for arch in ("amd64", "arm64"):
        (m / f"os-{arch}/etc/os-release").write_text(f"ID=os-{arch}\n")
    for r in (1, 2):
        run = m / f"rt{r}/opt/rt/run"
        run.parent.mkdir(parents=True)
        run.write_text(f"#!/bin/sh\necho runtime{r} $(cat /models/model.txt) on $(cat /etc/os-release)\n")
        run.chmod(0o755)
        (m / f"rt{r}/opt/rt/entry").write_text("")
    for k in (1, 2):
        (m / f"model{k}/models").mkdir(parents=True)
        (m / f"model{k}/models/model.txt").write_text(f"model{k}\n")
    (root / "items").mkdir()
    for i in range(6):
        (root / f"items/item-{i}.txt").write_text(f"item {i}\n")
    recipe = root / "recipe.yaml"
    recipe.write_text(UNITS)
    return recipe


def _clone_units(root: Path, clone: Path) -> Path:
    clone.mkdir()
    for part in ("m", "items"):
        shutil.copytree(root / part, clone / part, symlinks=True)
    shutil.copy2(root / "recipe.yaml", clone / "recipe.yaml")
    return clone / "recipe.yaml"


def test_two_platform_matrix_cells_are_indexes_sharing_the_dir_layers(
        tmp_path: Path, arm64_rootfs: Path, tool_env: dict[str, str]) -> None:
    recipe = make_units_project(tmp_path, arm64_rootfs)
    report = regfp_json("build", str(recipe), "--only", "matrix")
    cells = sorted(i["name"] for i in report["images"])
    assert cells == [f"matrix/grid:os-r{r}-m{k}" for r in (1, 2) for k in (1, 2)]
    # Each dir: tree is compressed once, not once per platform: 2 OS trees, 2 runtimes, 2 models.
    assert report["stats"]["layersCompressed"] == 6
    layout = tmp_path / "out"
    layers: dict[str, list[str]] = {"amd64": [], "arm64": []}
    for name in cells:
        entry, _ = index_of(layout, name)
        assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json", name
        assert [m["platform"]["architecture"] for m in skopeo_raw(layout, name, tool_env)["manifests"]] == \
            ["amd64", "arm64"]
        images = {arch: manifest_of(layout, d) for arch, d in _children(layout, name).items()}
        for arch, image in images.items():
            assert manifest_of(layout, image["config"])["architecture"] == arch
            assert len(image["layers"]) == 3
            layers[arch] += [la["digest"] for la in image["layers"]]
        # The OS layer is each platform's own; the runtime's and the model's are one blob on both.
        assert images["amd64"]["layers"][0] != images["arm64"]["layers"][0]
        assert images["amd64"]["layers"][1:] == images["arm64"]["layers"][1:]
    assert len(set(layers["amd64"]) | set(layers["arm64"])) == 6  # 2 OS + 2 runtimes + 2 models, stored once
    assert set(layers["amd64"]) & set(layers["arm64"]) == set(layers["amd64"]) - {layers["amd64"][0]}

    # The arm64 image of a cell, as skopeo selects it: aarch64 busybox running under qemu, the cell's files.
    rootfs = unpack_arch(layout, "matrix/grid:os-r2-m1", "arm64", tmp_path / "x", tool_env)
    assert elf_machine(rootfs / "bin/busybox") == "aarch64"
    assert run_arm64(rootfs, "/bin/busybox", "cat", "/models/model.txt", "/etc/os-release") == "model1\nID=os-arm64\n"
    assert (rootfs / "opt/rt/run").read_bytes() == (tmp_path / "m/rt2/opt/rt/run").read_bytes()
    # The amd64 one runs under runc.
    only_arch(layout, "matrix/grid:os-r2-m1", "amd64", tmp_path / "amd64", tool_env)
    ran = run_image(tmp_path / "amd64", "img", tmp_path / "bundle", tool_env, ["/opt/rt/run"])
    assert ran.returncode == 0 and ran.stdout.strip() == "runtime2 model1 on ID=os-amd64", ran.stderr

    again = regfp_json("build", str(recipe), "--only", "matrix")
    assert all(i["cached"] for i in again["images"])
    other = regfp_json("build", str(_clone_units(tmp_path, tmp_path / "clone")), "--only", "matrix")
    assert {i["name"]: i["digest"] for i in other["images"]} == {i["name"]: i["digest"] for i in report["images"]}

    # An axis value that is a two-platform index (a cell above) makes the matrix two-platform by itself.
    (tmp_path / "m/extra/opt/extra").mkdir(parents=True)
    (tmp_path / "m/extra/opt/extra/note").write_text("extra\n")
    stacked = tmp_path / "stacked.yaml"
    stacked.write_text('regfp: 1\nname: stacked\nmatrix:\n  - name: stack\n    axes:\n'
                       '      cell: {c: "oci:out:matrix/grid:os-r2-m1"}\n      extra: {e: "dir:m/extra"}\n'
                       "output: {layout: out-stacked}\n")
    regfp_json("build", str(stacked))
    below = {arch: manifest_of(layout, d) for arch, d in _children(layout, "matrix/grid:os-r2-m1").items()}
    above = {arch: manifest_of(tmp_path / "out-stacked", d)
             for arch, d in _children(tmp_path / "out-stacked", "matrix/stack:c-e").items()}
    assert sorted(above) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        assert above[arch]["layers"][:3] == below[arch]["layers"]
    assert above["amd64"]["layers"][3] == above["arm64"]["layers"][3]


def test_two_platform_work_chunks_share_the_item_layer(
        tmp_path: Path, arm64_rootfs: Path, tool_env: dict[str, str]) -> None:
    recipe = make_units_project(tmp_path, arm64_rootfs)
    report = regfp_json("build", str(recipe), "--only", "work")
    chunks = sorted(i["name"] for i in report["images"])
    assert chunks == ["work/jobs:1-of-2", "work/jobs:2-of-2"]
    layout = tmp_path / "out"
    seen: list[str] = []
    for name in chunks:
        assert index_of(layout, name)[0]["mediaType"] == "application/vnd.oci.image.index.v1+json"
        images = {arch: manifest_of(layout, d) for arch, d in _children(layout, name).items()}
        assert sorted(images) == ["amd64", "arm64"]
        assert images["amd64"]["layers"][0] != images["arm64"]["layers"][0]  # each platform's base
        assert images["amd64"]["layers"][1] == images["arm64"]["layers"][1]  # the items: one blob
        for arch, image in images.items():
            config = manifest_of(layout, image["config"])
            assert config["architecture"] == arch and config["config"]["User"] == "65534:65534"
        rootfs = unpack_arch(layout, name, "arm64", tmp_path / name.replace("/", "_").replace(":", "_"), tool_env)
        assert elf_machine(rootfs / "bin/busybox") == "aarch64"
        listed = json.loads(run_arm64(rootfs, "/bin/busybox", "cat", "/work/index.json"))
        assert listed["work"] == "jobs" and listed["chunks"] == 2
        seen += [it["item"] for it in listed["items"]]
    assert sorted(seen) == [f"item-{i}.txt" for i in range(6)]
    other = regfp_json("build", str(_clone_units(tmp_path, tmp_path / "clone")), "--only", "work")
    assert {i["name"]: i["digest"] for i in other["images"]} == {i["name"]: i["digest"] for i in report["images"]}
    # The platform set is part of the key: listing only amd64 makes other chunks (indexes of one image).
    amd64 = tmp_path / "amd64.yaml"
    amd64.write_text(UNITS.replace("matrix:", "platforms: [linux/amd64]\nmatrix:").replace(
        ',\n     linux/arm64: "dir:m/os-arm64"}}', "}}").replace(
        ', linux/arm64: "dir:m/os-arm64"}}', "}}").replace("out}", "out-amd64}"))
    only = regfp_json("build", str(amd64), "--only", "work")
    for i in only["images"]:
        assert sorted(_children(tmp_path / "out-amd64", i["name"])) == ["amd64"]
        assert i["digest"] != next(j["digest"] for j in report["images"] if j["name"] == i["name"])


ONLY_LISTED = """\
regfp: 1
name: units
platforms: [linux/amd64, linux/arm64]
matrix:
  - name: grid
    axes:
      runtime: {r1: "dir:m/rt1", r2: "dir:m/rt2"}
      model: {m1: "dir:m/model1", m2: "dir:m/model2"}
output: {layout: out}
"""


MAP_ENTRY = UNITS.replace('{os: {linux/amd64: "dir:m/os-amd64", linux/arm64: "dir:m/os-arm64"}}',
                          '{os: {linux/amd64: "dir:m/os-amd64",\n                  linux/arm64: "oci:rt-amd64:rt"}}')


@pytest.mark.parametrize("text", [UNITS, ONLY_LISTED, MAP_ENTRY],
                         ids=["per-platform-axis", "recipe-platforms", "mapping-entry"])
def test_a_matrix_axis_without_a_requested_platform_is_a_plan_time_error(tmp_path: Path, arm64_rootfs: Path,
                                                                         text: str) -> None:
    recipe = make_units_project(tmp_path, arm64_rootfs)
    regfp("copy", f"dir:{tmp_path / 'm/rt1'}", f"oci:{tmp_path / 'rt-amd64'}:rt", "--platform", "linux/amd64")
    text = text.replace('r1: "dir:m/rt1"', 'r1: "oci:rt-amd64:rt"')
    recipe.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "rt-amd64" in s)
    for command in ("plan", "build"):
        proc = regfp(command, str(recipe), check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{recipe}:{line}:" in proc.stderr and "linux/arm64" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


# ---- fallback: rebuild -----------------------------------------------------------------------------

STEP = ("  run: {command: 'echo \"$TARGETPLATFORM|$TARGETARCH\" > target.txt', "
        "outputs: [{from: target.txt, to: /app/target.txt}]EXTRA}\n")


@pytest.mark.parametrize("step", [None, "", ", perPlatform: true"], ids=["no-step", "shared-step", "per-platform-step"])
def test_fallback_rebuild_of_a_two_platform_patch_rebuilds_only_the_platform_that_cannot_be_rebased(
        tmp_path: Path, arm64_rootfs: Path, tool_env: dict[str, str], step: str | None) -> None:
    sha = make_multi_project(tmp_path, arm64_rootfs)
    recipe = tmp_path / "recipe.yaml"
    project = PROJECT if step is None else PROJECT.replace("  env: {GREETING: hi}\n", "  env: {GREETING: hi}\n" +
                                                           STEP.replace("EXTRA", step))
    recipe.write_text(project.replace("patch:\n", "patch:\n  fallback: rebuild\n"))
    regfp_json("build", str(recipe), "--only", "build")
    layout = tmp_path / "out"
    built = {arch: manifest_of(layout, d) for arch, d in _children(layout, f"build/src:{sha}").items()}
    # arm64's old base is gone from the layout and its directory moved on: arm64 cannot be rebased.
    gone = built["arm64"]["annotations"]["org.opencontainers.image.base.digest"].split(":")[1]
    (layout / "blobs/sha256" / gone).unlink()
    (tmp_path / "bases/arm64-1/etc/os-release").write_text("ID=test-os-1-arm64-moved\n")
    without = tmp_path / "no-fallback.yaml"
    without.write_text(project)
    failed = regfp("build", str(without), "--only", "patch", check=False)
    assert failed.returncode == 1 and "the image's base" in failed.stderr and "Traceback" not in failed.stderr

    done = regfp_json("build", str(recipe), "--only", "patch")
    stable = f"patch/src/{sha}:stable"
    made = next(i for i in done["images"] if i["name"] == stable)
    assert not made["cached"] and "rebuilt linux/arm64 (fallback: rebuild)" in made["reason"], made
    entry, index = index_of(layout, stable)
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert index["annotations"]["dev.regfp.fallback"] == "rebuild linux/arm64"
    images = {arch: manifest_of(layout, d) for arch, d in _children(layout, stable).items()}
    assert sorted(images) == ["amd64", "arm64"]
    # amd64 was rebased (its layers above the base are the build's blobs); arm64 was built again.
    assert "dev.regfp.fallback" not in images["amd64"]["annotations"]
    assert images["amd64"]["layers"][1:] == built["amd64"]["layers"][1:]
    assert images["arm64"]["annotations"]["dev.regfp.fallback"] == "rebuild"
    assert images["arm64"]["annotations"]["dev.regfp.channel"] == "stable"
    assert images["arm64"]["annotations"]["org.opencontainers.image.base.name"] == "dir:bases/arm64-1"
    assert images["arm64"]["layers"][1:] == built["arm64"]["layers"][1:]  # the same Git tree, the same blobs
    assert images["arm64"]["layers"][0] != built["arm64"]["layers"][0]
    rootfs = unpack_arch(layout, stable, "arm64", tmp_path / "x", tool_env)
    assert elf_machine(rootfs / "bin/busybox") == "aarch64"
    assert run_arm64(rootfs, "/bin/busybox", "cat", "/etc/os-release") == "ID=test-os-1-arm64-moved\n"
    if step is not None:  # the rebuilt platform's step ran as the build's did: for arm64 when per platform
        assert (rootfs / "app/target.txt").read_text() == ("linux/arm64|arm64\n" if step else "|\n")
    assert regfp("verify", str(layout)).returncode == 0
    again = regfp_json("build", str(recipe), "--only", "patch")
    assert next(i for i in again["images"] if i["name"] == stable)["cached"]


def test_patch_from_a_two_platform_index_patches_each_platform(
        tmp_path: Path, arm64_rootfs: Path, tool_env: dict[str, str]) -> None:
    sha = make_multi_project(tmp_path, arm64_rootfs)
    regfp_json("build", str(tmp_path / "recipe.yaml"), "--only", "build")
    built_name = f"build/src:{sha}"
    entry, _ = index_of(tmp_path / "out", built_name)
    built = {arch: manifest_of(tmp_path / "out", d) for arch, d in _children(tmp_path / "out", built_name).items()}
    recipe = tmp_path / "from.yaml"
    recipe.write_text(f'regfp: 1\nname: shipped\npatch:\n  from: "oci:out:{built_name}"\n  channels:\n'
                      '    next: {linux/amd64: "dir:bases/amd64-2", linux/arm64: "dir:bases/arm64-2"}\n'
                      "output: {layout: out-from}\n")
    report = regfp_json("build", str(recipe))
    hexd = entry["digest"].split(":")[1]
    names = {i["name"]: i["digest"] for i in report["images"]}
    layout = tmp_path / "out-from"
    # The whole index is copied in (its digest names it), and the patch is an index of both platforms.
    assert names[f"from/shipped:{hexd}"] == entry["digest"]
    patched = f"patch/shipped/{hexd}:next"
    assert index_of(layout, patched)[0]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    images = {arch: manifest_of(layout, d) for arch, d in _children(layout, patched).items()}
    assert sorted(images) == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        assert images[arch]["layers"][1:] == built[arch]["layers"][1:]  # rebased: the app's blobs kept
        assert images[arch]["layers"][0] != built[arch]["layers"][0]
        assert images[arch]["annotations"]["org.opencontainers.image.base.name"] == f"dir:bases/{arch}-2"
    rootfs = unpack_arch(layout, patched, "arm64", tmp_path / "x", tool_env)
    assert elf_machine(rootfs / "bin/busybox") == "aarch64"
    assert run_arm64(rootfs, "/bin/busybox", "cat", "/etc/os-release") == "ID=test-os-2-arm64\n"
    again = regfp_json("build", str(recipe))
    assert all(i["cached"] for i in again["images"])
    # A channel without one of the index's platforms is a plan-time error naming its line.
    recipe.write_text(recipe.read_text().replace(', linux/arm64: "dir:bases/arm64-2"', "").replace(
        "out-from", "out-from2"))
    refused = regfp("build", str(recipe), check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert f"{recipe}:6:" in refused.stderr and "names no image for linux/arm64" in refused.stderr, refused.stderr
    assert not (tmp_path / "out-from2").exists()


def test_a_work_base_without_a_requested_platform_is_a_plan_time_error(tmp_path: Path, arm64_rootfs: Path) -> None:
    recipe = make_units_project(tmp_path, arm64_rootfs)
    regfp("copy", f"dir:{tmp_path / 'm/os-amd64'}", f"oci:{tmp_path / 'os-amd64'}:os", "--platform", "linux/amd64")
    text = ('regfp: 1\nname: units\nplatforms: [linux/amd64, linux/arm64]\nwork:\n'
            '  - {name: jobs, root: items, chunks: 2, base: "oci:os-amd64:os"}\noutput: {layout: out}\n')
    recipe.write_text(text)
    for command in ("plan", "build"):
        proc = regfp(command, str(recipe), check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{recipe}:5:" in proc.stderr and "not linux/arm64" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("first", "then"), [("linux/amd64", "linux/arm64"), ("linux/arm/v7", "linux/amd64"),
                                              ("linux/arm64", "linux/arm/v7")])
def test_a_dir_tree_made_for_one_platform_is_byte_for_byte_the_others_image(tmp_path: Path, first: str,
                                                                            then: str) -> None:
    """A run makes a dir: tree's layer once and re-labels the image for each further platform; that must
    be exactly the image the tree gives when made for that platform directly (else digests would depend
    on which platform a run happened to load first)."""
    from regctl_fp.engine.run import on_platform
    from regctl_fp.sources import BuildOptions, image_from_directory
    from regctl_fp.stores.null import NullStore

    make_busybox_rootfs(tmp_path / "tree")
    store = NullStore()  # only digests matter here
    made = image_from_directory(tmp_path / "tree", store, BuildOptions(platform=Platform.parse(first)))
    direct = image_from_directory(tmp_path / "tree", store, BuildOptions(platform=Platform.parse(then)))
    derived = on_platform(made, Platform.parse(then))
    assert derived.config_bytes == direct.config_bytes and derived.digest == direct.digest
    assert derived.layers[0].digest == made.layers[0].digest and derived.digest != made.digest
