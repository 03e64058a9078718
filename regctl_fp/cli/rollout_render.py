"""The release stream as text: the status tables of ``regfp rollout``, and the answer to ``--delta N``.

On a terminal digests and revisions are shortened to fit; in a pipe every record is one line with full
values (see ``output.records``)."""

from __future__ import annotations

from typing import Any

from . import output


def status(data: dict[str, Any]) -> None:
    """``rollout`` and ``rollout --status``: what was cut, the releases, and the environments."""
    terminal = output.stdout_is_terminal()
    if data.get("cut"):
        c = data["cut"]
        output.line(f"cut r{c['release']}" if c["cut"] else f"nothing new: r{c['release']} is the newest release")
    rows = []
    for rel in data["releases"]:
        tags = "yanked" if rel["yanked"] else _compact(rel["tags"])
        if terminal:
            rows.append((rel["release"], rel["digest"][:19], rel["created"], rel["revision"][:12], rel["channel"],
                         tags))
        else:
            rows.append((rel["release"], rel["digest"], rel["created"], rel["revision"], rel["channel"],
                         tags.replace(" ", ",") or "-"))
    output.records(("release", "digest", "created", "revision", "channel", "tags"), rows,
                   title=f"rollouts/{data['name']}")
    if data["environments"]:
        none = "(none yet)" if terminal else "-"
        output.records(("environment", "delta", "release"),
                       [(e["environment"] or "-", f"n-{e['delta']}", e["release"] or none)
                        for e in data["environments"]])


def at_delta(data: dict[str, Any], delta: int, only: str | None) -> None:
    """``rollout --delta N``: per environment (or for the stream when the recipe has none), the release
    and digest ``n-N`` resolves to. Nothing is cut."""
    rows = []
    for e in data["environments"]:
        if e["delta"] != delta or (only is not None and e["environment"] != only):
            continue
        where = e["environment"] or f"rollouts/{data['name']}"
        rows.append((where, f"n-{delta}", e["release"] or "-", e["digest"] or "-"))
    output.records(("environment", "delta", "release", "digest"), rows)
    missing = [r[0] for r in rows if r[2] == "-"]
    if missing:
        live = sum(not r["yanked"] for r in data["releases"])
        output.note(f"n-{delta} names no release yet for {', '.join(missing)}: the stream has {live} live "
                    f"release{'' if live == 1 else 's'}")


def _compact(tags: list[str]) -> str:
    """``n-0 cohort-0 cohort-1 cohort-2`` -> ``n-0 cohort-0..2``."""
    plain = [t for t in tags if not t.startswith("cohort-")]
    runs: list[list[int]] = []
    for n in sorted(int(t.removeprefix("cohort-")) for t in tags if t.startswith("cohort-")):
        if runs and runs[-1][1] == n - 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    plain += [f"cohort-{a}" if a == b else f"cohort-{a}..{b}" for a, b in runs]
    return " ".join(plain)
