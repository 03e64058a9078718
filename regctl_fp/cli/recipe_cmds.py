"""``regfp build``, ``regfp plan`` and ``regfp schema``: recipes in, images and pictures out."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import InvalidInput
from . import edge, output
from .progress import progress_bar


def parse_now(text: str | None) -> int:
    """``--now`` (ISO 8601) or the real clock: the only place a stage's idea of time comes from."""
    if text is None:
        return int(time.time())
    from ..timeutil import parse_rfc3339

    try:
        return parse_rfc3339(text)
    except ValueError as e:
        raise InvalidInput(f"--now: {e}") from None


def _options():  # type: ignore[no-untyped-def]
    return edge.build_options()


def secrets(lr):  # type: ignore[no-untyped-def]
    """The values of the environment variables the recipe names for CA key passwords (read here, at the
    edge; never printed)."""
    import os

    from ..recipe.environments import password_vars

    return {name: os.environ[name] for name in password_vars(lr) if name in os.environ}


def _git_cache() -> Path:
    return edge.cache_dir()


def build(recipe: Path, out: Path | None, only: list[str], now_text: str | None, json_out: bool,
          channels: list[str] | None = None) -> None:
    from ..recipe.execute import execute
    from ..recipe.load import load_recipe
    from ..recipe.plan import STAGES, make_plan

    now = parse_now(now_text)
    for stage in only:
        if stage not in STAGES:
            raise InvalidInput(f"--only {stage!r}: stages are {', '.join(sorted(STAGES))}")
    lr = load_recipe(recipe)
    options = _options()
    plan = make_plan(lr, now=now, options=options, layout=out.resolve() if out else None, git_cache=_git_cache(),
                     stages=frozenset(only) or STAGES, channels=tuple(channels) if channels else None)
    with progress_bar() as bar:
        report = execute(plan, now=now, options=options, progress=bar, secrets=secrets(lr))
    if json_out:
        output.print_json(report.to_json())
        return
    con = output.out_console()
    for img in report.images:
        mark = "cached" if img.cached else ("built " if img.stage == "build" else "made  ")
        con.print(f"{mark}  {img.name}  {img.digest}", markup=False, soft_wrap=True)
    output.note(f"layout {plan.layout}")


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
