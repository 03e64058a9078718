"""The engine converges: after any sequence of commits, builds, yanks, unyanks, channel moves, recipe edits
and clock jumps, the layout's names equal a from-scratch build of the same state, and the report equals
the layout. Runs the engine in process (no CLI) on a real Git repository and real dir: bases."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from pki import make_ca
from project import make_project

from regctl_fp.engine.converge import converge, plan
from regctl_fp.engine.report import Report
from regctl_fp.engine.rollout import read_ledger
from regctl_fp.engine.run import LedgerChange, Run
from regctl_fp.oci import annotation_keys as A
from regctl_fp.oci.descriptor import Platform
from regctl_fp.oci.digest import Digest
from regctl_fp.recipe.load import load_recipe
from regctl_fp.sources import BuildOptions
from regctl_fp.stages.rollout import ledger_name
from regctl_fp.stores.base import closure, manifest_annotations
from regctl_fp.stores.layout import LayoutStore
from regctl_fp.stores.transfer import copy_descriptor

DAY = 86400
START = 1_780_000_000  # 2026-05-28
ENVIRONMENTS = """\
rollouts: {{channel: stable, keep: 2, cohorts: {{buckets: 4, canary: 50%}}}}
environments:
  - {{location: us, environment: prod, delta: 1, env: {{LEVEL: "{level}"}}, files: {{/etc/x.conf: x.conf}}}}
  - {{location: us, environment: staging, delta: 0,
     identity: {{ca: pki/ca.pem, key: pki/ca.key, ttl: 30d, trustDomain: t.example}}}}
"""
OPTIONS = BuildOptions(platform=Platform("linux", "amd64"))


def write_recipe(root: Path, level: str) -> None:
    text = (root / "recipe.base").read_text()
    (root / "recipe.yaml").write_text(text.replace("output: {layout: out}\n",
                                                   ENVIRONMENTS.format(level=level) + "output: {layout: out}\n"))


def names_of(layout: Path) -> dict[str, str]:
    if not (layout / "oci-layout").exists():
        return {}
    return {n: d.digest.text for n, d in LayoutStore.open(layout).names().items()}


def run_engine(root: Path, layout: Path, now: int, change: LedgerChange | None = None) -> Report:
    lr = load_recipe(root / "recipe.yaml")
    if change is not None:
        run = Run(lr, layout, now, OPTIONS, secrets={}, cut=False, ledger_change=change, channels=("stable",))
        return converge(run, ("rollout", "environment"))
    return converge(Run(lr, layout, now, OPTIONS, secrets={}))


def from_scratch(root: Path, layout: Path, now: int, yank_only: bool) -> dict[str, str]:
    """The same state built into an empty layout by the same kind of run: only the history (the ledger
    and the builds with their build times) is carried over; everything else is computed again."""
    scratch = Path(tempfile.mkdtemp(dir=root, prefix="scratch-")) / "out"
    src = LayoutStore.open(layout)
    with LayoutStore.open_or_create(scratch) as dst:
        history = {n: d for n, d in src.names().items() if n.startswith("build/") or n.endswith(":ledger")}
        for desc in history.values():
            copy_descriptor(src, dst, desc.with_annotations({}))
            # A build keeps the base it was built on (gc keeps it with the build): patch rebases off it.
            for annotations in manifest_annotations(src, desc):
                base = annotations.get("org.opencontainers.image.base.digest")
                if base and src.has_blob(Digest.parse(base)):
                    copy_descriptor(src, dst, src.resolve_digest(Digest.parse(base)))
        dst.set_names(history)
    if yank_only:  # the same release stream, converged without building: a no-op change of the ledger
        lr = load_recipe(root / "recipe.yaml")
        run = Run(lr, scratch, now, OPTIONS, secrets={}, cut=False, channels=("stable",))
        converge(run, ("rollout", "environment"))
    else:
        run_engine(root, scratch, now)
    return names_of(scratch)


OWNED_MOVING = (":live", ":n-", ":cohort-", ":ledger")


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="regfp-state-"))
        self.now = START
        self.level = "info"
        self.commits = 0
        self.built = False

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @initialize()
    def project(self) -> None:
        self.repo = make_project(self.root)
        (self.root / "recipe.base").write_text((self.root / "recipe.yaml").read_text())
        (self.root / "x.conf").write_text("x = 1\n")
        make_ca(self.root / "pki", "ca")
        write_recipe(self.root, self.level)
        self.layout = self.root / "out"

    @rule()
    def commit(self) -> None:
        self.commits += 1
        self.repo.write("app/main.txt", f"application code v{self.commits + 1}\n")
        self.repo.commit(f"change {self.commits}")

    @rule(channel=st.sampled_from([1, 2]))
    def move_channel(self, channel: int) -> None:
        path = self.root / "bases" / f"os-{channel}" / "etc" / "os-release"
        path.write_text(path.read_text() + "PATCHED=1\n")

    @rule(level=st.sampled_from(["info", "debug", "warn"]))
    def edit_recipe(self, level: str) -> None:
        self.level = level
        write_recipe(self.root, level)

    @rule(days=st.integers(min_value=0, max_value=120))
    def clock(self, days: int) -> None:
        self.now += days * DAY

    @rule()
    def build(self) -> None:
        self.check(run_engine(self.root, self.layout, self.now), yank_only=False)
        self.built = True

    @precondition(lambda self: self.built)
    @rule(data=st.data(), yank=st.booleans())
    def yank(self, data: st.DataObject, yank: bool) -> None:
        ledger = read_ledger(LayoutStore.open(self.layout), "hello")
        candidates = [r.number for r in ledger.releases if r.yanked != yank]
        if not candidates:
            return
        number = data.draw(st.sampled_from(candidates))
        self.check(run_engine(self.root, self.layout, self.now, LedgerChange(number, yank)), yank_only=True)

    def check(self, report: Report, *, yank_only: bool) -> None:
        held = names_of(self.layout)
        for image in report.images:  # the report is what the layout holds
            assert held.get(image.name) == image.digest, image
        for name in report.removed:
            assert name not in held
        scratch = from_scratch(self.root, self.layout, self.now, yank_only)
        for name, digest in scratch.items():
            assert held.get(name) == digest, (name, held.get(name), digest)
        moving = {n for n in held if n.endswith(OWNED_MOVING) or any(m in n for m in OWNED_MOVING)}
        assert moving == {n for n in scratch if any(m in n for m in OWNED_MOVING)}

    @invariant()
    def live_names_follow_the_ledger(self) -> None:
        if not self.built:
            return
        store = LayoutStore.open(self.layout)
        ledger = read_ledger(store, "hello")
        held = store.names()
        for env, delta in (("us.prod", 1), ("us.staging", 0)):
            rel = ledger.at_delta(delta)
            live = held.get(f"{env}/app/hello:live")
            if rel is None:
                assert live is None
            elif live is not None:  # made by a build or yank run (not only a commit since)
                ann = store.get_manifest(live)
                assert f'"{A.RELEASE}":"r{rel.number}"'.encode() in ann


EngineMachine.TestCase.settings = settings(max_examples=6, stateful_step_count=7, deadline=None,
                                           suppress_health_check=list(HealthCheck))
test_engine_converges = pytest.mark.slow(EngineMachine.TestCase)


def test_yank_moves_environments_and_report_reads_back(tmp_path: Path) -> None:
    """The issue's case: after a yank, :live, n-<k> and cohorts move at once; unyank restores."""
    repo = make_project(tmp_path)
    (tmp_path / "recipe.base").write_text((tmp_path / "recipe.yaml").read_text())
    (tmp_path / "x.conf").write_text("x = 1\n")
    make_ca(tmp_path / "pki", "ca")
    write_recipe(tmp_path, "info")
    layout = tmp_path / "out"
    for i in range(3):  # r1, r2, r3
        repo.write("app/main.txt", f"v{i}\n")
        repo.commit(f"v{i}")
        run_engine(tmp_path, layout, START)
    before = names_of(layout)
    assert before["rollouts/hello:n-0"] == before["rollouts/hello:r3"]
    report = run_engine(tmp_path, layout, START, LedgerChange(3, True))
    after = names_of(layout)
    assert after["rollouts/hello:n-0"] == before["rollouts/hello:r2"]
    assert after["rollouts/hello:n-1"] == before["rollouts/hello:r1"]
    assert after["us.staging/app/hello:live"] == before["us.staging/app/hello:r2"]
    assert after["us.prod/app/hello:live"] == before["us.prod/app/hello:r1"]
    assert {f"rollouts/hello:cohort-{b}" for b in range(4)} <= {i.name for i in report.images}
    assert all(after[i.name] == i.digest for i in report.images)
    # A build after the yank does not undo it (the yank is in the ledger), and reports what is held.
    again = run_engine(tmp_path, layout, START)
    assert names_of(layout)["us.prod/app/hello:live"] == before["us.prod/app/hello:r1"]
    assert all(names_of(layout)[i.name] == i.digest for i in again.images)
    run_engine(tmp_path, layout, START, LedgerChange(3, False))
    restored = names_of(layout)
    for name in ("rollouts/hello:n-0", "rollouts/hello:n-1", "us.staging/app/hello:live", "us.prod/app/hello:live"):
        assert restored[name] == before[name], name


def test_planner_states_without_cli(tmp_path: Path) -> None:
    """The planner on its own: a plan makes and writes nothing; states follow keys, not neighbours."""
    make_project(tmp_path)
    (tmp_path / "recipe.base").write_text((tmp_path / "recipe.yaml").read_text())
    (tmp_path / "x.conf").write_text("x = 1\n")
    make_ca(tmp_path / "pki", "ca")
    write_recipe(tmp_path, "info")
    layout = tmp_path / "out"
    lr = load_recipe(tmp_path / "recipe.yaml")

    def states() -> dict[str, str]:
        outcomes = plan(Run(lr, layout, START, OPTIONS, dry=True))
        return {str(o.node.id): o.state for o in outcomes}

    cold = states()
    assert not layout.exists()
    assert cold["build"] == "build" and cold["patch:stable"] == "build" and cold["input:source"] == "input"
    run_engine(tmp_path, layout, START)
    warm = states()
    assert {k: v for k, v in warm.items() if not k.startswith("input")} == {
        "build": "cached", "patch:stable": "cached", "patch:current": "cached", "patch:next": "cached",
        "rollout": "cached", "environment:us.prod": "waiting", "environment:us.staging": "cached"}
    # A moved channel re-patches that channel only; the build and the other patches stay cached.
    path = tmp_path / "bases/os-3/etc/os-release"
    path.write_text(path.read_text() + "X=1\n")
    moved = states()
    assert moved["patch:next"] == "build" and moved["patch:stable"] == "cached" and moved["build"] == "cached"
    # An environment whose stored image was deleted by hand is made again, though its release is cached.
    store = LayoutStore.open(layout)
    live = store.names()["us.staging/app/hello:live"]
    assert closure(store, [live])
    with LayoutStore.open_or_create(layout) as writer:
        writer.set_names({"us.staging/app/hello:live": None, "us.staging/app/hello:r1": None})
    assert states()["environment:us.staging"] == "build"
    assert names_of(layout).get(ledger_name("hello"))
