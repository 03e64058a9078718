"""``regfp rollout`` (cut, status, yank) and ``regfp cohort``: the release stream on the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from . import output, rollout_render

if TYPE_CHECKING:
    from ..recipe.model import Rollouts
    from ..stages.rollout import Ledger


def _env_key(text: str) -> tuple[str, str]:
    location, sep, environment = text.partition(".")
    if not sep or not location or not environment:
        raise InvalidInput(f"--env {text!r}: expected LOCATION.ENVIRONMENT, e.g. us-east.prod")
    return location, environment


def rollout(recipe: Path, out: Path | None, delta: int | None, env: str | None, status: bool,
            yank: str | None, unyank: str | None, now_text: str | None, json_out: bool) -> None:
    from ..recipe.load import load_recipe
    from ..recipe.rollouts import read_ledger, update
    from ..stages.rollout import parse_release
    from ..stores.layout import LayoutStore
    from .recipe_cmds import _git_cache, _options, parse_now, secrets

    lr = load_recipe(recipe)
    r = lr.recipe
    if r.rollouts is None:
        raise InvalidInput(f"{lr.path}: the recipe has no 'rollouts' section")
    if delta is not None and delta < 0:
        raise InvalidInput("--delta must be 0 or more")
    wanted = _env_key(env) if env else None
    if wanted and not any((e.location, e.environment) == wanted for e in r.environments):
        raise InvalidInput(f"--env {env}: no such environment in the recipe "
                           f"({', '.join(f'{e.location}.{e.environment}' for e in r.environments) or 'none'})")
    layout = out.resolve() if out else lr.output_layout
    now = parse_now(now_text)
    cut: dict[str, Any] | None = None
    if yank or unyank:
        number = parse_release(yank or unyank or "")
        with LayoutStore.open(layout) as store:
            _, ledger = update(store, r.name, r.rollouts, lambda led: led.set_yanked(number, bool(yank)))
    elif status or delta is not None:  # questions about the stream: nothing is cut
        with LayoutStore.open(layout) as store:
            ledger = read_ledger(store, r.name)
    else:
        from ..recipe.execute import execute
        from ..recipe.plan import make_plan
        from .progress import progress_bar

        options = _options()
        plan = make_plan(lr, now=now, options=options, layout=layout, git_cache=_git_cache(),
                         stages=frozenset({"build", "patch", "rollout", "environment"}),
                         channels=(r.rollouts.channel,))
        with progress_bar() as bar:
            report = execute(plan, now=now, options=options, progress=bar, secrets=secrets(lr))
        cut = report.rollout
        with LayoutStore.open(layout) as store:
            ledger = read_ledger(store, r.name)
    envs = []
    for e in r.environments:
        d = delta if (delta is not None and (wanted is None or wanted == (e.location, e.environment))) else e.delta
        if wanted is not None and wanted != (e.location, e.environment):
            d = e.delta
        rel = ledger.at_delta(d)
        envs.append({"environment": f"{e.location}.{e.environment}", "delta": d,
                     "release": f"r{rel.number}" if rel else None, "digest": rel.image.digest.text if rel else None})
    if delta is not None and wanted is None and not r.environments:
        rel = ledger.at_delta(delta)
        envs.append({"environment": None, "delta": delta, "release": f"r{rel.number}" if rel else None,
                     "digest": rel.image.digest.text if rel else None})
    data = _status_json(ledger, r.rollouts, envs, cut)
    if json_out:
        output.print_json(data)
    elif delta is not None and not status and not (yank or unyank):
        rollout_render.at_delta(data, delta, env)
    else:
        rollout_render.status(data)


def _status_json(ledger: Ledger, spec: Rollouts, envs: list[dict[str, Any]],
                 cut: dict[str, Any] | None) -> dict[str, Any]:
    from ..recipe.rollouts import cohorts_of
    from ..stages.rollout import names

    pointing: dict[str, list[str]] = {}
    for name, desc in names(ledger, spec.keep, cohorts_of(spec)).items():
        tag = name.rsplit(":", 1)[1]
        if desc is not None and not tag.startswith("r"):
            pointing.setdefault(desc.digest.text, []).append(tag)
    releases = []
    for rel in reversed(ledger.releases):
        releases.append({"release": f"r{rel.number}", "digest": rel.image.digest.text, "created": rel.created,
                         "revision": rel.revision, "channel": rel.channel, "yanked": rel.yanked,
                         "tags": pointing.get(rel.image.digest.text, []) if not rel.yanked else []})
    out: dict[str, Any] = {"name": ledger.name, "lastRelease": ledger.last, "releases": releases,
                           "environments": envs}
    if cut is not None:
        out["cut"] = cut
    return out


def cohort(client_id: str, recipe: Path | None, name: str | None, buckets: int | None, json_out: bool) -> None:
    from ..stages.rollout import cohort_of

    if recipe is not None:
        from ..recipe.load import load_recipe

        r = load_recipe(recipe).recipe
        if r.rollouts is None or r.rollouts.cohorts is None:
            raise InvalidInput(f"{recipe}: the recipe has no rollouts.cohorts section")
        name, buckets = r.name, r.rollouts.cohorts.buckets
    if name is None or buckets is None:
        raise InvalidInput("give --recipe RECIPE, or --name NAME and --buckets N")
    if buckets < 1:
        raise InvalidInput("--buckets must be at least 1")
    bucket = cohort_of(name, client_id, buckets)
    tag = f"rollouts/{name}:cohort-{bucket}"
    if json_out:
        output.print_json({"client": client_id, "bucket": bucket, "buckets": buckets, "name": tag})
    else:
        output.line(tag)
