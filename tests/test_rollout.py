"""Rollouts: the release stream in the layout itself, relative tags, yanks, cohorts, crash safety."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import need, regfp, regfp_json
from project import make_project

from regctl_fp.engine.rollout import read_ledger, update
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.recipe.load import load_recipe
from regctl_fp.stages.rollout import Cohorts, cohort_of, names
from regctl_fp.stores.layout import LayoutStore

ROLLOUTS = """\
rollouts:
  channel: stable
  keep: 3
  cohorts: {buckets: 10, canary: 20%}
environments:
  - {location: us-east, environment: prod, delta: 1}
  - {location: us-east, environment: staging, delta: 0}
"""


def project(tmp: Path):  # type: ignore[no-untyped-def]
    repo = make_project(tmp)
    recipe = tmp / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("output: {layout: out}\n", ROLLOUTS + "output: {layout: out}\n"))
    return repo


def names_in(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}


def rollout(tmp: Path, *args: str) -> dict:
    return regfp_json("rollout", str(tmp / "recipe.yaml"), *args)  # type: ignore[return-value]


def test_three_commits_three_releases(tmp_path: Path) -> None:
    repo = project(tmp_path)
    digests = []
    for i in range(1, 4):
        if i > 1:
            repo.write("app/main.txt", f"version {i}\n")
            repo.commit(f"v{i}")
        result = rollout(tmp_path, "--now", f"2026-01-0{i}T00:00:00Z")
        assert result["cut"] == {"release": i, "cut": True}
        digests.append(result["releases"][0]["digest"])
    layout = tmp_path / "out"
    found = names_in(layout)
    assert [found[f"rollouts/hello:r{i}"] for i in (1, 2, 3)] == digests
    assert found["rollouts/hello:n-0"] == digests[2] and found["rollouts/hello:n-1"] == digests[1]
    assert found["rollouts/hello:n-2"] == digests[0]
    status = rollout(tmp_path, "--status")
    envs = {e["environment"]: e["release"] for e in status["environments"]}
    assert envs == {"us-east.prod": "r2", "us-east.staging": "r3"}
    again = rollout(tmp_path, "--now", "2026-01-09T00:00:00Z")
    assert again["cut"] == {"release": 3, "cut": False}
    assert names_in(layout) == found
    override = rollout(tmp_path, "--status", "--env", "us-east.prod", "--delta", "2")
    assert {e["environment"]: e["release"] for e in override["environments"]}["us-east.prod"] == "r1"


def test_yank_and_unyank(tmp_path: Path) -> None:
    repo = project(tmp_path)
    for i in range(1, 4):
        if i > 1:
            repo.write("app/main.txt", f"version {i}\n")
            repo.commit(f"v{i}")
        rollout(tmp_path)
    layout = tmp_path / "out"
    before = names_in(layout)
    yanked = rollout(tmp_path, "--yank", "r3")
    after = names_in(layout)
    assert after["rollouts/hello:n-0"] == before["rollouts/hello:r2"]
    assert after["rollouts/hello:n-1"] == before["rollouts/hello:r1"]
    assert "rollouts/hello:n-2" not in after  # only two live releases are left
    assert after["rollouts/hello:r3"] == before["rollouts/hello:r3"]  # nothing is deleted
    assert [r["yanked"] for r in yanked["releases"]] == [True, False, False]
    assert {e["environment"]: e["release"] for e in yanked["environments"]} == {"us-east.prod": "r1",
                                                                                 "us-east.staging": "r2"}
    rollout(tmp_path, "--unyank", "r3")
    assert names_in(layout) == before
    # A new release after a yank never reuses a number.
    rollout(tmp_path, "--yank", "r3")
    repo.write("app/main.txt", "version 4\n")
    repo.commit("v4")
    assert rollout(tmp_path)["cut"] == {"release": 4, "cut": True}
    bad = regfp("rollout", str(tmp_path / "recipe.yaml"), "--yank", "r9", check=False)
    assert bad.returncode == 2 and "no release r9" in bad.stderr


def test_cohort_tags(tmp_path: Path) -> None:
    repo = project(tmp_path)
    rollout(tmp_path)
    repo.write("app/main.txt", "version 2\n")
    repo.commit("v2")
    rollout(tmp_path)
    found = names_in(tmp_path / "out")
    newest = found["rollouts/hello:r2"]
    cohorts = [found[f"rollouts/hello:cohort-{k}"] for k in range(10)]
    assert sum(d == newest for d in cohorts) == 2
    assert cohorts[:2] == [newest, newest] and set(cohorts[2:]) == {found["rollouts/hello:r1"]}
    shown = regfp_json("cohort", "client-7", "--recipe", str(tmp_path / "recipe.yaml"))
    assert shown["name"] == f"rollouts/hello:cohort-{cohort_of('hello', 'client-7', 10)}"


def test_cohort_hash_is_uniform_and_raising_the_share_only_moves_forward() -> None:
    counts = Counter(cohort_of("hello", f"client-{i}", 10) for i in range(10_000))
    assert set(counts) == set(range(10))
    assert all(abs(n / 10_000 - 0.10) <= 0.01 for n in counts.values()), counts
    before = [Cohorts(10, 20).delta_of(b) for b in range(10)]
    after = [Cohorts(10, 50).delta_of(b) for b in range(10)]
    assert all(a <= b for a, b in zip(after, before, strict=True))


def test_tags_are_plain_oci_names(tmp_path: Path, tool_env: dict[str, str]) -> None:
    repo = project(tmp_path)
    rollout(tmp_path)
    repo.write("app/main.txt", "version 2\n")
    repo.commit("v2")
    rollout(tmp_path)
    shown = subprocess.run([need("skopeo"), "inspect", f"oci:{tmp_path / 'out'}:rollouts/hello:n-1"],
                           env=tool_env, capture_output=True, text=True, check=True)
    assert json.loads(shown.stdout)["Digest"] == names_in(tmp_path / "out")["rollouts/hello:r1"]


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", range(4))
def test_crash_between_writes_is_healed_by_rerunning(tmp_path: Path, crash_at: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo = project(tmp_path)
    rollout(tmp_path)
    repo.write("app/main.txt", "version 2\n")
    repo.commit("v2")
    regfp("build", str(tmp_path / "recipe.yaml"), "--only", "patch")  # the candidate exists
    lr = load_recipe(tmp_path / "recipe.yaml")
    spec = lr.recipe.rollouts
    assert spec is not None
    store = LayoutStore.open(tmp_path / "out")
    sha = repo.git("rev-parse", "HEAD")
    candidate = store.resolve(f"patch/src/{sha}:stable")
    image = Descriptor(candidate.media_type, candidate.digest, candidate.size)
    calls = {"n": 0}
    real_put, real_set = LayoutStore.put_manifest, LayoutStore.set_names

    def counting(real):  # type: ignore[no-untyped-def]
        def wrapper(self, *a, **kw):  # type: ignore[no-untyped-def]
            if calls["n"] == crash_at:
                raise Crash(f"injected crash before write {crash_at}")
            calls["n"] += 1
            return real(self, *a, **kw)
        return wrapper

    monkeypatch.setattr(LayoutStore, "put_manifest", counting(real_put))
    monkeypatch.setattr(LayoutStore, "set_names", counting(real_set))
    cut = lambda ledger: ledger.cut(image, created="2026-01-02T00:00:00Z", revision=sha,  # noqa: E731
                                    channel="stable", base_digest="")
    try:
        update(store, "hello", spec, cut)
    except Crash:
        pass
    monkeypatch.setattr(LayoutStore, "put_manifest", real_put)
    monkeypatch.setattr(LayoutStore, "set_names", real_set)
    result = rollout(tmp_path)  # the re-run heals whatever state the crash left
    assert result["cut"]["release"] == 2
    found = names_in(tmp_path / "out")
    ledger = read_ledger(LayoutStore.open(tmp_path / "out"), "hello")
    assert [r.number for r in ledger.releases] == [1, 2]
    wanted = names(ledger, spec.keep, Cohorts(10, 20))
    for name, desc in wanted.items():
        assert (found.get(name) == desc.digest.text) if desc else name not in found
    assert found["rollouts/hello:n-0"] == image.digest.text
    assert regfp("verify", str(tmp_path / "out")).returncode == 0


_WRITER = """
import sys
from regctl_fp.oci.descriptor import Descriptor
from regctl_fp.recipe.load import load_recipe
from regctl_fp.engine.rollout import update
from regctl_fp.stores.layout import LayoutStore
recipe, layout, first, second, rounds = sys.argv[1:6]
lr = load_recipe(recipe)
store = LayoutStore.open(layout)
a, b = (Descriptor(d.media_type, d.digest, d.size) for d in (store.resolve(first), store.resolve(second)))
def toggle(led):
    # Whatever the others did, cut the image that is not the newest: every call cuts exactly one release.
    pick = b if led.latest is not None and led.latest.image.digest == a.digest else a
    return led.cut(pick, created="", revision="", channel="stable", base_digest="")
for _ in range(int(rounds)):
    update(store, "hello", lr.recipe.rollouts, toggle)
"""


def test_concurrent_rollouts_never_share_a_number(tmp_path: Path) -> None:
    project(tmp_path)
    regfp("build", str(tmp_path / "recipe.yaml"), "--only", "patch")
    store = LayoutStore.open(tmp_path / "out")
    first, second = sorted(n for n in store.names() if n.startswith("patch/"))[:2]
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "recipe.yaml"), str(tmp_path / "out"),
                               first, second, "5"]) for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    ledger = read_ledger(LayoutStore.open(tmp_path / "out"), "hello")
    assert [r.number for r in ledger.releases] == list(range(1, 21))
    assert ledger.last == 20
