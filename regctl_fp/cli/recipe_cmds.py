"""``regfp build``, ``regfp plan`` and ``regfp schema``: recipes in, images and pictures out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from . import edge, output
from .progress import progress_bar

if TYPE_CHECKING:
    from ..oci.descriptor import Descriptor
    from ..progress import Progress
    from ..recipe.load import LoadedRecipe
    from ..remote_cache import RemoteCache
    from ..sources import BuildOptions
    from ..stores.layout import LayoutStore
    from ..stores.registry import RegistryStore
    from .registry_cmds import Session


def parse_now(text: str | None) -> int:
    """``--now`` (ISO 8601) or the real clock: the only place a stage's idea of time comes from."""
    if text is None:
        return int(time.time())
    from ..timeutil import parse_rfc3339

    try:
        return parse_rfc3339(text)
    except ValueError as e:
        raise InvalidInput(f"--now: {e}") from None


def _options() -> BuildOptions:
    return edge.build_options()


def secrets(lr: LoadedRecipe) -> dict[str, str]:
    """The values of the environment variables the recipe names for CA key passwords (read here, at the
    edge; never printed)."""
    import os

    from ..recipe.environments import password_vars

    return {name: os.environ[name] for name in password_vars(lr) if name in os.environ}


def _git_cache() -> Path:
    return edge.cache_dir()


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 1 <= int(index) <= int(count):
        raise InvalidInput(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 2/3")
    return int(index), int(count)


def remote_cache(lr: LoadedRecipe, cache: str | None, session: Session) -> RemoteCache | None:
    """The registry stage cache (``--cache`` or the recipe's ``cache:``), or None."""
    from ..refs import RegistryRef, parse_registry

    text = cache or (lr.recipe.cache.repository if lr.recipe.cache else None)
    if text is None:
        return None
    ref = parse_registry(text)
    if not isinstance(ref, RegistryRef) or ref.digest is not None or (ref.tag not in (None, "latest")):
        raise InvalidInput(f"--cache {text!r}: name a registry repository, e.g. localhost:5000/regfp-cache")
    from ..remote_cache import RemoteCache

    return RemoteCache(session.store(ref), ref.repository)


def build(recipe: Path, out: Path | None, only: list[str], now_text: str | None, json_out: bool,
          channels: list[str] | None = None, cache: str | None = None, shard_text: str | None = None,
          push: bool = False) -> None:
    from dataclasses import replace

    from ..recipe.execute import execute
    from ..recipe.load import load_recipe
    from ..recipe.plan import STAGES, make_plan
    from ..stores.layout import LayoutStore
    from . import registry_cmds

    now = parse_now(now_text)
    for stage in only:
        if stage not in STAGES:
            raise InvalidInput(f"--only {stage!r}: stages are {', '.join(sorted(STAGES))}")
    shard = parse_shard(shard_text)
    lr = load_recipe(recipe)
    if push and lr.recipe.push is None and not any(e.push for e in lr.recipe.environments):
        raise InvalidInput(f"{lr.path}: --push needs push.prefix in the recipe")
    layout = out.resolve() if out else lr.output_layout
    with registry_cmds.session() as session:
        remote = remote_cache(lr, cache, session)
        options = replace(_options(), remote=remote)
        # An existing layout takes the dir: images planning has to make anyway (so they are made once).
        work = LayoutStore.open(layout) if (layout / "oci-layout").exists() else None
        plan = make_plan(lr, now=now, options=options, layout=layout, git_cache=_git_cache(),
                         stages=frozenset(only) or STAGES, channels=tuple(channels) if channels else None,
                         shard=shard, work=work)
        with progress_bar() as bar:
            report = execute(plan, now=now, options=options, progress=bar, secrets=secrets(lr))
            pushed = _push(lr, layout, [i.name for i in report.images], session, bar) if push else []
        if remote is not None:
            report.remote = vars(remote.stats)
    if json_out:
        doc = report.to_json()
        if push:
            doc["pushed"] = pushed
        output.print_json(doc)
        return
    con = output.out_console()
    for img in report.images:
        mark = "cached" if img.cached else ("built " if img.stage == "build" else "made  ")
        con.print(f"{mark}  {img.name}  {img.digest}", markup=False, soft_wrap=True)
    for ref in pushed:
        con.print(f"pushed  {ref}", markup=False, soft_wrap=True)
    output.note(f"layout {plan.layout}")


def _push(lr: LoadedRecipe, layout: Path, names: list[str], session: Session, progress: Progress) -> list[str]:
    """Every image this run named, to its registry target: checked first, then blobs, manifests, tags."""
    from ..recipe.push import check, targets
    from ..refs import parse_registry
    from ..stores.layout import LayoutStore
    from ..stores.registry import RegistryStore, push_names

    store = LayoutStore.open(layout)
    current = store.names()
    rollout = f"rollouts/{lr.recipe.name}:"  # the whole stream: ledger, r<N>, n-<k>, cohort-<k>
    names = [*names, *sorted(n for n in current if n.startswith(rollout))]
    unique = list(dict.fromkeys(n for n in names if n in current))
    where = targets(lr, unique)
    check(store, {n: (current[n], where[n]) for n in unique})
    groups: dict[str, dict[str, object]] = {}
    for n in unique:
        groups.setdefault(where[n].prefix, {})[where[n].name] = current[n].with_annotations({})
    pushed = []
    stores = {}
    for prefix in groups:
        ref = parse_registry(f"{prefix.rstrip('/')}/x")
        stores[prefix] = (ref, RegistryStore(session.client(ref.registry), ref.repository.rpartition("/")[0]))
    ledger = f"rollouts/{lr.recipe.name}:ledger"
    if ledger in current:  # checked before anything moves: never replace a stream with a diverged one
        _check_remote_ledger(lr.recipe.name, store, current[ledger], stores[where[ledger].prefix][1], ledger)
    for prefix, items in groups.items():
        ref, target = stores[prefix]
        path = target.prefix
        push_names(store, target, items, progress=progress)  # type: ignore[arg-type]
        pushed += [f"{ref.registry}/{path + '/' if path else ''}{name}" for name in items]
    return pushed


def _check_remote_ledger(name: str, local: LayoutStore, ours: Descriptor, target: RegistryStore,
                         ledger_name: str) -> None:
    """The registry's ledger must be ours, or an older state of it (its releases a prefix of ours);
    otherwise another machine cut releases this layout lacks, and pushing would rewrite history."""
    from ..errors import NotFound, RegfpError
    from ..stages.rollout import Ledger

    try:
        theirs_desc = target.resolve(ledger_name)
    except NotFound:
        return
    if theirs_desc.digest == ours.digest:
        return
    theirs = Ledger.parse(name, target.get_manifest(theirs_desc))
    mine = Ledger.parse(name, local.get_manifest(ours))

    def key(ledger: Ledger) -> list[tuple[int, str]]:
        return [(r.number, r.image.digest.text) for r in ledger.releases]

    if theirs.last > mine.last or key(mine)[: len(key(theirs))] != key(theirs):
        raise RegfpError(f"the registry's {ledger_name} has releases this layout does not (theirs up to "
                         f"r{theirs.last}, ours up to r{mine.last}): another machine cut them. Pushing would "
                         "rewrite the stream; build with the same --cache to share the ledger, then push")


def plan(recipe: Path, out: Path | None, now_text: str | None, fmt: str) -> None:
    from ..recipe.load import load_recipe
    from ..recipe.plan import make_plan
    from . import plan_render

    now = parse_now(now_text)
    lr = load_recipe(recipe)
    p = make_plan(lr, now=now, options=_options(), layout=out.resolve() if out else None, git_cache=_git_cache())
    if fmt == "json":
        output.print_json(plan_render.as_json(p))
    elif fmt == "dot":
        print(plan_render.as_dot(p))
    else:
        plan_render.as_tree(p)


def schema() -> None:
    from ..recipe.load import recipe_schema

    output.print_json(recipe_schema())
