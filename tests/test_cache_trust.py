"""Remote cache hits that cannot be forged: with ``attest.key`` an entry is used only when its signed
provenance names the stage being evaluated; without a key anyone who can push to the cache repository
decides what a key means (README, "Scaling out on CI"). Two "machines" share one real registry."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from project import make_project
from registry_support import FaultProxy, Registry
from test_attest_engine import PASSWORD, add_key
from test_multiplatform_tools import Built, _build, _machine
from test_multiplatform_tools import built as built  # the module's two-platform project fixture
from test_remote_cache import build, machine

from regctl_fp.oci import annotation_keys as A

pytest_plugins = ["registry_fixtures"]

REPO = "regfp-cache"
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json")


def machines(tmp_path: Path, *which: str, key: str | None = "shared") -> list[tuple[Path, dict[str, str]]]:
    """Byte-identical checkouts with their own caches; with ``key``, all sign with that one key (a
    second call with another ``key`` name makes another key)."""
    template = tmp_path / "template"
    if not template.exists():
        make_project(template)
    out = []
    for name in which:
        root, env = machine(template, tmp_path / name)
        if key is not None:
            sign_with(root, env, tmp_path / f"key-{key}")
        out.append((root, env))
    return out


def sign_with(root: Path, env: dict[str, str], keys: Path) -> None:
    """The checkout's recipe signs with the key in ``keys`` (made there on first use)."""
    if not keys.exists():
        keys.mkdir()
        (keys / "recipe.yaml").write_text("")  # add_key appends its line to a recipe: a scratch one
        add_key(keys)
    shutil.copy2(keys / "attest.key", root / "attest.key")
    with (root / "recipe.yaml").open("a") as f:
        f.write("attest: {key: attest.key, keyPasswordEnv: ATTEST_PW}\n")
    env["ATTEST_PW"] = PASSWORD


def entries(layout: Path) -> dict[str, dict[str, str]]:
    """Name -> the layout's index entry annotations."""
    index = json.loads((layout / "index.json").read_text())
    return {m["annotations"][A.REF_NAME]: m["annotations"] for m in index["manifests"]
            if A.REF_NAME in m.get("annotations", {})}


def names(layout: Path) -> dict[str, str]:
    """Every named image and every attestation (by subject and predicate) of a layout, to its digest."""
    index = json.loads((layout / "index.json").read_text())
    out = {}
    for m in index["manifests"]:
        notes = m.get("annotations", {})
        out[notes.get(A.REF_NAME) or f"{notes[A.SUBJECT]} {notes[A.PREDICATE_TYPE]}"] = m["digest"]
    return out


def forge(reg: Registry, tag: str, digest: str) -> None:
    """Whoever can push to the cache repository tags another (complete, self-consistent) image there."""
    base = f"http://{reg.host}/v2/{REPO}/manifests/"
    with urllib.request.urlopen(urllib.request.Request(base + digest, headers={"Accept": MANIFEST_TYPES}),
                                timeout=30) as resp:
        body, media = resp.read(), resp.headers["Content-Type"]
    put = urllib.request.Request(base + tag, data=body, method="PUT", headers={"Content-Type": media})
    with urllib.request.urlopen(put, timeout=30) as resp:
        assert resp.status == 201
    assert reg.tag_target(REPO, tag) == digest


def stage_image(report: dict, stage: str) -> dict:  # type: ignore[type-arg]
    return next(i for i in report["images"] if i["stage"] == stage)


def forge_build_entry(reg: Registry, a: Path, first: dict) -> tuple[str, str, str]:  # type: ignore[type-arg]
    """Tag the patch image (with its genuine signed referrers) as the build stage's entry; the build
    key, the build's digest and the forged digest."""
    made, patched = stage_image(first, "build"), stage_image(first, "patch")
    key = entries(a / "out")[made["name"]][A.KEY]
    assert reg.tag_target(REPO, f"key-{key}") == made["digest"]
    forge(reg, f"key-{key}", patched["digest"])
    return key, made["digest"], patched["digest"]


def test_signed_entries_are_hits_on_another_machine(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    reg: Registry = make_registry()
    cache = f"{reg.host}/{REPO}"
    (a, env_a), (b, env_b) = machines(tmp_path, "a", "b")
    first = build(a, env_a, "--cache", cache)
    assert first["stats"]["remote"]["published"] > 0
    key = entries(a / "out")[stage_image(first, "build")["name"]][A.KEY]
    # The entry's provenance went with it: the fallback referrers tag of the build image exists.
    assert reg.tag_exists(REPO, stage_image(first, "build")["digest"].replace(":", "-"))
    assert reg.tag_target(REPO, f"key-{key}") == stage_image(first, "build")["digest"]
    proxy = FaultProxy(reg.host)  # counts the requests of each machine
    try:
        second = build(b, env_b, "--cache", f"{proxy.host}/{REPO}")
        checked = len(proxy.seen)
        proxy.clear()
        [(plain, env_plain)] = machines(tmp_path, "plain", key=None)
        unchecked = build(plain, env_plain, "--cache", f"{proxy.host}/{REPO}")
        baseline = len(proxy.seen)
    finally:
        proxy.stop()
    assert second["stats"]["layersCompressed"] == 0, second["stats"]
    assert second["stats"]["remote"]["untrusted"] == 0 and second["stats"]["remote"]["hits"] > 0
    assert second["stats"]["remote"]["published"] == 0
    assert names(b / "out") == names(a / "out")  # images and their attestations: identical digests
    # Cheap: per hit, the referrers listing (fallback tag: HEAD + GET) and the envelope (manifest + blob);
    # plus one probe of the referrers API per repository.
    hits = second["stats"]["remote"]["hits"]
    assert unchecked["stats"]["remote"]["hits"] == hits
    assert checked - baseline <= 4 * hits + 1, (checked, baseline, hits)


def test_forged_entry_is_used_without_a_key_and_refused_with_it(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    reg: Registry = make_registry()
    cache = f"{reg.host}/{REPO}"
    (a, env_a), (b, env_b) = machines(tmp_path, "a", "b")
    [(plain, env_plain)] = machines(tmp_path, "plain", key=None)
    first = build(a, env_a, "--cache", cache)
    key, real, fake = forge_build_entry(reg, a, first)
    # The trust model README states: without attest.key, whoever can push to the cache decides.
    trusting = build(plain, env_plain, "--cache", cache, "--only", "build")
    assert trusting["stats"]["remote"]["untrusted"] == 0
    assert stage_image(trusting, "build")["digest"] == fake != real and stage_image(trusting, "build")["cached"]
    # With the key, the forged entry (which even carries the patch image's genuine signed provenance)
    # is refused, made again, and published over the forged tag.
    second = build(b, env_b, "--cache", cache)
    assert second["stats"]["remote"]["untrusted"] == 1, second["stats"]
    made = stage_image(second, "build")
    assert made["digest"] == real != fake and made["cached"] is False
    assert names(b / "out") == names(a / "out")
    assert reg.tag_target(REPO, f"key-{key}") == real  # B published the true entry over the forged tag


def test_entry_signed_by_another_key_is_refused(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    reg: Registry = make_registry()
    cache = f"{reg.host}/{REPO}"
    [(other, env_other)] = machines(tmp_path, "other", key="another")
    [(b, env_b)] = machines(tmp_path, "b", key="shared")
    theirs = build(other, env_other, "--cache", cache)
    assert theirs["stats"]["remote"]["published"] > 0
    ours = build(b, env_b, "--cache", cache)
    assert ours["stats"]["remote"]["untrusted"] >= 2, ours["stats"]  # the build's entry and the patch's
    assert not any(i["cached"] for i in ours["images"] if i["stage"] in ("build", "patch"))
    # Recomputed to the same images (the key is not part of a stage key).
    for stage in ("build", "patch"):
        assert stage_image(ours, stage)["digest"] == stage_image(theirs, stage)["digest"]


def tags(reg: Registry, prefix: str) -> list[str]:
    with urllib.request.urlopen(f"http://{reg.host}/v2/{REPO}/tags/list", timeout=30) as resp:
        return sorted(t for t in json.loads(resp.read())["tags"] if t.startswith(prefix))


def test_forged_dir_entry_is_used_without_a_key_and_refused_with_it(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    """``dir-<hash>`` names the image a base tree became: forged, it would slip another base under a
    build that this machine then signs. Each dir entry is tagged with another's image here."""
    reg: Registry = make_registry()
    cache = f"{reg.host}/{REPO}"
    (a, env_a), (b, env_b) = machines(tmp_path, "a", "b")
    [(plain, env_plain)] = machines(tmp_path, "plain", key=None)
    first = build(a, env_a, "--cache", cache)
    dirs = tags(reg, "dir-")
    assert len(dirs) == 3, dirs  # the three channel bases
    targets = [reg.tag_target(REPO, t) for t in dirs]
    for tag, other in zip(dirs, targets[1:] + targets[:1], strict=True):
        assert other is not None
        forge(reg, tag, other)
    trusting = build(plain, env_plain, "--cache", cache, "--only", "build")
    assert stage_image(trusting, "build")["digest"] != stage_image(first, "build")["digest"]
    second = build(b, env_b, "--cache", cache)
    assert second["stats"]["remote"]["untrusted"] >= 3, second["stats"]
    assert names(b / "out") == names(a / "out")
    assert [reg.tag_target(REPO, t) for t in dirs] == targets  # published again over the forged tags


def test_an_index_entry_is_checked_by_the_index_provenance(built: Built, make_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A two-platform build is one index entry: its own provenance (not its images') vouches for it."""
    reg: Registry = make_registry()
    cache = f"{reg.host}/{REPO}"
    (a, env_a), (b, env_b) = _machine(built.root, tmp_path / "a"), _machine(built.root, tmp_path / "b")
    for root, env in ((a, env_a), (b, env_b)):
        sign_with(root, env, tmp_path / "keys")
    first = _build(a, env_a, "--cache", cache)
    build_entry = entries(a / "out")[built.build]
    key, real = build_entry[A.KEY], stage_image(first, "build")["digest"]
    assert reg.tag_target(REPO, f"key-{key}") == real
    second = _build(b, env_b, "--cache", cache)
    assert second["stats"]["layersCompressed"] == 0 and second["stats"]["remote"]["untrusted"] == 0
    assert names(b / "out") == names(a / "out")
    # Forged: another index of the run (a patch) under the build's key.
    fake = next(i["digest"] for i in first["images"] if i["stage"] == "patch")
    forge(reg, f"key-{key}", fake)
    c, env_c = _machine(built.root, tmp_path / "c")
    sign_with(c, env_c, tmp_path / "keys")
    third = _build(c, env_c, "--cache", cache)
    assert third["stats"]["remote"]["untrusted"] == 1, third["stats"]
    assert stage_image(third, "build")["digest"] == real and names(c / "out") == names(a / "out")
