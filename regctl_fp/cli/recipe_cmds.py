"""``regfp build``, ``regfp plan`` and ``regfp schema``: recipes in, images and pictures out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from . import edge, options, output
from .progress import progress_bar

if TYPE_CHECKING:
    from ..progress import Progress
    from ..recipe.load import LoadedRecipe
    from ..sources import BuildOptions
    from ..stores.remote_cache import RemoteCache
    from .registry_session import Session


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
    return options.build_options()


def secrets(lr: LoadedRecipe) -> dict[str, str]:
    """The values of the environment variables the recipe names for CA key passwords (read here, at the
    edge; never printed)."""
    import os

    return {name: os.environ[name] for name in lr.password_vars() if name in os.environ}


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
    from ..stores.remote_cache import RemoteCache

    return RemoteCache(session.store(ref), ref.repository)


def build(recipe: Path, out: Path | None, only: list[str], now_text: str | None, json_out: bool,
          channels: list[str] | None = None, cache: str | None = None, shard_text: str | None = None,
          push: bool = False, referrers: bool = True) -> None:
    from dataclasses import replace

    from ..engine.converge import converge
    from ..engine.kinds import STAGES
    from ..engine.run import Run
    from . import registry_session
    from .recipe_file import load

    now = parse_now(now_text)
    for stage in only:
        if stage not in STAGES:
            raise InvalidInput(f"--only {stage!r}: stages are {', '.join(sorted(STAGES))}")
    shard = parse_shard(shard_text)
    lr = load(recipe)
    if push and lr.recipe.push is None and not any(e.push for e in lr.recipe.environments):
        raise InvalidInput(f"{lr.path}: --push needs push.prefix in the recipe")
    layout = out.resolve() if out else lr.output_layout
    with registry_session.session() as session:
        remote = remote_cache(lr, cache, session)
        with progress_bar() as bar:
            run = Run(lr, layout, now, replace(_options(), remote=remote), progress=bar, secrets=secrets(lr),
                      git_cache=_git_cache(), channels=tuple(channels) if channels else None)
            report = converge(run, only or STAGES, shard)
            pushed = _push(lr, layout, [i.name for i in report.images], session, bar, referrers) if push else []
        if remote is not None:
            report.remote = vars(remote.stats)
    if json_out:
        doc = report.to_json()
        if push:
            doc["pushed"] = pushed
        output.print_json(doc)
        return
    for img in report.images:
        mark = "cached" if img.cached else ("built " if img.stage == "build" else "made  ")
        output.line(f"{mark}  {img.name}  {img.digest}")
    for name in report.removed:
        output.line(f"removed {name}")
    for ref in pushed:
        output.line(f"pushed  {ref}")
    for note in report.notes:
        output.note(note)
    output.note(f"layout {layout}")


def _push(lr: LoadedRecipe, layout: Path, names: list[str], session: Session, progress: Progress,
          referrers: bool = True) -> list[str]:
    """Every image this run named, to its registry target (see engine.push)."""
    from ..engine.push import push
    from ..refs import parse_registry
    from ..stores.layout import LayoutStore
    from ..stores.registry import RegistryStore

    def open_prefix(prefix: str) -> tuple[str, RegistryStore]:
        ref = parse_registry(f"{prefix.rstrip('/')}/x")
        return ref.registry, RegistryStore(session.client(ref.registry), ref.repository.rpartition("/")[0])

    return push(lr, LayoutStore.open(layout), names, open_prefix, progress, referrers=referrers)


def plan(recipe: Path, out: Path | None, now_text: str | None, fmt: str) -> None:
    from ..engine.converge import plan as make_plan
    from ..engine.run import Run
    from . import plan_render
    from .recipe_file import load

    now = parse_now(now_text)
    lr = load(recipe)
    layout = out.resolve() if out else lr.output_layout
    run = Run(lr, layout, now, _options(), dry=True, git_cache=_git_cache())
    outcomes = make_plan(run)
    if fmt == "json":
        output.print_json(plan_render.as_json(run, outcomes))
    elif fmt == "dot":
        print(plan_render.as_dot(outcomes))
    else:
        plan_render.as_tree(run, outcomes)


def schema() -> None:
    from ..recipe.load import recipe_schema

    output.print_json(recipe_schema())
