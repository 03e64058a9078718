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
    from ..engine.converge import converge
    from ..engine.rollout import read_ledger
    from ..engine.run import LedgerChange, Run
    from ..recipe.load import load_recipe
    from ..stages.rollout import parse_release
    from ..stores.layout import LayoutStore
    from .progress import progress_bar
    from .recipe_cmds import _git_cache, _options, parse_now, secrets

    if yank and unyank:
        raise InvalidInput("--yank and --unyank are alternatives; give one")
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
    if (status or delta is not None) and not (yank or unyank):  # questions about the stream: nothing is cut
        with LayoutStore.open(layout) as store:
            ledger = read_ledger(store, r.name)
    else:
        # A yank changes the stream and moves every name that follows it (n-<k>, cohorts, environments);
        # without one, the rollout channel's image is built, patched and released when it is new.
        change = LedgerChange(parse_release(yank or unyank or ""), bool(yank)) if yank or unyank else None
        if change is not None:
            LayoutStore.open(layout)  # the layout must exist: a yank names a release in it
        with progress_bar() as bar:
            run = Run(lr, layout, now, _options(), progress=bar, secrets=secrets(lr), git_cache=_git_cache(),
                      cut=change is None, ledger_change=change, channels=(r.rollouts.channel,))
            report = converge(run, ("rollout", "environment"))
        cut = report.rollout if change is None else None
        with LayoutStore.open(layout) as store:
            ledger = read_ledger(store, r.name)
    envs = []
    for e in r.environments:
        d = delta if (delta is not None and (wanted is None or wanted == (e.location, e.environment))) else e.delta
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
    from ..engine.rollout import cohorts_of
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
