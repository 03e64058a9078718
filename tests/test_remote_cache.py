"""The registry as a shared stage cache, and sharded builds: two "machines" share one real registry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from pki import make_ca
from project import make_project
from registry_support import Registry

pytest_plugins = ["registry_fixtures"]

NOW = "2026-06-10T12:00:00Z"
EXTRA = """\
rollouts: {channel: stable, keep: 2}
environments:
  - {location: us-east, environment: prod, delta: 0, env: {LOG_LEVEL: info},
     identity: {ca: pki/ca.pem, key: pki/ca.key, trustDomain: prod.example}}
  - {location: us-east, environment: staging, delta: 0, env: {LOG_LEVEL: debug}}
matrix:
  - name: grid
    axes:
      base: {b1: "dir:m/b1", b2: "dir:m/b2"}
      extra: {x: "dir:m/x"}
work:
  - {name: jobs, root: items, items: ["*.txt"], chunks: 2}
"""


def machine_project(root: Path) -> Path:
    """The same project on every machine (a byte-identical checkout, created once and copied)."""
    make_project(root)
    make_ca(root / "pki", "ca")
    for name in ("b1", "b2", "x"):
        (root / "m" / name / "etc").mkdir(parents=True)
        (root / "m" / name / "etc" / f"{name}.txt").write_text(f"{name}\n")
    (root / "items").mkdir()
    for i in range(5):
        (root / "items" / f"i{i}.txt").write_text(f"item {i}\n")
    recipe = root / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("output: {layout: out}\n", EXTRA + "output: {layout: out}\n"))
    return root


def machine(template: Path, where: Path) -> tuple[Path, dict[str, str]]:
    """A separate checkout with its own empty caches (HOME, XDG_CACHE_HOME)."""
    shutil.copytree(template, where, symlinks=True)
    home = where.parent / f"{where.name}-home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    return where, env


def build(root: Path, env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "regctl_fp", "build", str(root / "recipe.yaml"), "--json",
                           "--now", NOW, *args], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def names(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}


def test_second_machine_computes_nothing(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    reg: Registry = make_registry()
    cache = f"127.0.0.1:{reg.port}/regfp-cache"
    template = machine_project(tmp_path / "template")
    a, env_a = machine(template, tmp_path / "a")
    b, env_b = machine(template, tmp_path / "b")
    first = build(a, env_a, "--cache", cache)
    assert first["stats"]["layersCompressed"] > 0 and first["stats"]["remote"]["published"] > 0
    second = build(b, env_b, "--cache", cache)
    assert second["stats"]["layersCompressed"] == 0, (second["stats"], [i for i in second["images"] if not i["cached"]])
    assert all(i["cached"] for i in second["images"]), [i for i in second["images"] if not i["cached"]]
    assert {i["name"]: i["digest"] for i in second["images"]} == {i["name"]: i["digest"] for i in first["images"]}
    assert second["stats"]["remote"]["hits"] > 0 and second["stats"]["remote"]["published"] == 0
    # B's layout is complete and correct on its own: every named image verifies.
    verify = subprocess.run([sys.executable, "-m", "regctl_fp", "verify", str(b / "out")], capture_output=True,
                            text=True, env=env_b)
    assert verify.returncode == 0, verify.stderr


def test_cache_entry_with_missing_blobs_is_recomputed(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    reg: Registry = make_registry()
    cache = f"127.0.0.1:{reg.port}/regfp-cache"
    template = machine_project(tmp_path / "template")
    a, env_a = machine(template, tmp_path / "a")
    first = build(a, env_a, "--cache", cache, "--only", "work")
    chunk = next(i for i in first["images"] if i["stage"] == "work")
    # Delete that chunk's own layer from the registry's storage (the top layer of the image).
    shown = subprocess.run([sys.executable, "-m", "regctl_fp", "inspect", f"oci:{a / 'out'}:{chunk['name']}",
                            "--json"], capture_output=True, text=True, env=env_a, check=True)
    layer = json.loads(shown.stdout)["layers"][-1]["digest"].split(":")[1]
    blob = reg.storage / "docker/registry/v2/blobs/sha256" / layer[:2] / layer
    shutil.rmtree(blob)
    b, env_b = machine(template, tmp_path / "b")
    second = build(b, env_b, "--cache", cache, "--only", "work")
    redone = {i["name"]: i for i in second["images"]}
    assert redone[chunk["name"]]["cached"] is False  # never trusted
    assert redone[chunk["name"]]["digest"] == chunk["digest"]  # and recomputed to the same bytes
    assert second["stats"]["remote"]["untrusted"] >= 1
    others = [i for i in second["images"] if i["name"] != chunk["name"]]
    assert others and all(i["cached"] for i in others)


def test_three_shards_compute_each_unit_once(tmp_path: Path, make_registry) -> None:  # type: ignore[no-untyped-def]
    reg: Registry = make_registry()
    cache = f"127.0.0.1:{reg.port}/regfp-cache"
    template = machine_project(tmp_path / "template")
    plan = subprocess.run([sys.executable, "-m", "regctl_fp", "plan", str(template / "recipe.yaml"), "--json",
                           "--now", NOW], capture_output=True, text=True, check=True)
    units = {n["id"]: n for n in json.loads(plan.stdout)["nodes"] if n["unit"]}
    assert {n["stage"] for n in units.values()} == {"patch", "environment", "matrix", "work"}
    shards = [machine(template, tmp_path / f"shard{i}") for i in (1, 2, 3)]
    procs = [subprocess.Popen([sys.executable, "-m", "regctl_fp", "build", str(root / "recipe.yaml"), "--json",
                               "--now", NOW, "--cache", cache, "--shard", f"{i}/3"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for i, (root, env) in enumerate(shards, start=1)]
    outputs = [p.communicate(timeout=600) for p in procs]
    failed = [(p.returncode, err) for p, (_, err) in zip(procs, outputs, strict=True) if p.returncode]
    assert not failed, failed
    computed: Counter[str] = Counter()
    unit_names = {name for n in units.values() for name in n["names"]}
    for out, _ in outputs:
        for image in json.loads(out)["images"]:
            if not image["cached"] and image["name"] in unit_names:
                computed[image["name"]] += 1
    # Every unit was computed by exactly one shard (an environment unit has two names: live and rN).
    assert set(computed) == {n["names"][0] for n in units.values()} | {
        n["names"][1] for n in units.values() if len(n["names"]) > 1}
    assert set(computed.values()) == {1}
    final, env_final = machine(template, tmp_path / "final")
    assembled = build(final, env_final, "--cache", cache)
    assert all(i["cached"] for i in assembled["images"]) and assembled["stats"]["layersCompressed"] == 0
    alone, env_alone = machine(template, tmp_path / "alone")
    unsharded = build(alone, env_alone)
    assert names(final / "out") == names(alone / "out")
    assert {i["name"]: i["digest"] for i in assembled["images"]} == {
        i["name"]: i["digest"] for i in unsharded["images"]}
