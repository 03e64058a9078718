"""Multi-platform recipes (issue 18): one recipe, linux/amd64 and linux/arm64, the build an image index."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import elf_machine, regfp, run_arm64

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
