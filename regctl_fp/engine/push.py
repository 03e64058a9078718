"""Pushing a recipe's names to registries: where each name goes, what may never go there, and the push.

Names go under the recipe's ``push.prefix``; an environment with its own ``push.prefix`` receives its
images as ``<prefix>/app/<name>:<tag>`` (its registry is the environment's). Images that carry a private
key (``dev.regfp.contains-secret``) go only to targets marked ``private: true``; debug images only to
``ad-hoc/`` names. Everything is checked before the first byte is sent; then blobs, manifests, tags.
A registry cannot delete tags: a name the layout no longer holds keeps pointing where it did there.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InvalidInput, NotFound, RegfpError
from ..oci import annotation_keys as A
from ..oci.descriptor import Descriptor
from ..progress import SILENT, Progress
from ..recipe.load import LoadedRecipe
from ..stages.rollout import Ledger, ledger_name
from ..stores.base import Store, manifest_annotations
from ..stores.layout import LayoutStore
from ..stores.registry import RegistryStore
from ..values import valueclass


@valueclass
class Target:
    prefix: str  # registry host and repository prefix, e.g. localhost:5000/acme
    name: str  # regfp name under that prefix, e.g. build/hello:<sha>
    private: bool


def targets(lr: LoadedRecipe, names: list[str]) -> dict[str, Target]:
    r = lr.recipe
    out: dict[str, Target] = {}
    envs = {f"{e.location}.{e.environment}": e for e in r.environments}
    for name in names:
        head = name.split("/", 1)[0]
        env = envs.get(head)
        if env is not None and env.push is not None:
            out[name] = Target(env.push.prefix, name.split("/", 1)[1], env.push.private)
        elif r.push is not None:
            out[name] = Target(r.push.prefix, name, r.push.private)
        else:
            raise InvalidInput(f"{lr.path}: --push needs a push.prefix in the recipe (nowhere to send {name})")
    return out


def check(store: Store, plan: dict[str, tuple[Descriptor, Target]]) -> None:
    """Refuse, before anything moves, secrets bound for a public target and debug images bound for
    anything but ad-hoc/."""
    from ..stages.promotion import is_dev_target

    for name, (desc, target) in sorted(plan.items()):
        for ann in manifest_annotations(store, desc):
            if ann.get(A.CONTAINS_SECRET) == "true" and not target.private:
                raise InvalidInput(f"{name} carries a private key ({A.CONTAINS_SECRET}) and {target.prefix} "
                                   "is not marked private: true in the recipe; refusing to push it")
            if ann.get(A.DEBUG) == "true" and not is_dev_target(target.name.rpartition(":")[0]):
                raise InvalidInput(f"{name} is a debug image; debug images only go to ad-hoc/ names")


def push(lr: LoadedRecipe, store: LayoutStore, names: list[str],
         open_prefix: Callable[[str], tuple[str, RegistryStore]],
         progress: Progress = SILENT, *, referrers: bool = True) -> list[str]:
    """Every name in ``names`` that the layout holds (and the whole release stream), to its registry
    target: checked first, then blobs, manifests, the images' referrers (unless ``referrers`` is false),
    tags. ``open_prefix(prefix)`` gives the registry store for a target prefix. Returns the references
    pushed."""
    from ..stores.registry import push_names

    current = store.names()
    rollout = f"rollouts/{lr.recipe.name}:"  # the whole stream: ledger, r<N>, n-<k>, cohort-<k>
    every = [*names, *sorted(n for n in current if n.startswith(rollout))]
    unique = list(dict.fromkeys(n for n in every if n in current))
    where = targets(lr, unique)
    check(store, {n: (current[n], where[n]) for n in unique})
    groups: dict[str, dict[str, Descriptor]] = {}
    for n in unique:
        groups.setdefault(where[n].prefix, {})[where[n].name] = current[n].with_annotations({})
    stores = {prefix: open_prefix(prefix) for prefix in groups}
    ledger = ledger_name(lr.recipe.name)
    if ledger in current:  # checked before anything moves: never replace a stream with a diverged one
        _check_remote_ledger(lr.recipe.name, store, current[ledger], stores[where[ledger].prefix][1], ledger)
    pushed = []
    for prefix, items in groups.items():
        host, target = stores[prefix]
        push_names(store, target, items, progress=progress, referrers=referrers)
        pushed += [f"{host}/{target.prefix + '/' if target.prefix else ''}{name}" for name in items]
    return pushed


def _check_remote_ledger(name: str, local: LayoutStore, ours: Descriptor, target: RegistryStore,
                         ledger: str) -> None:
    """The registry's ledger must be ours, or an older state of it (its releases a prefix of ours);
    otherwise another machine cut releases this layout lacks, and pushing would rewrite history."""
    try:
        theirs_desc = target.resolve(ledger)
    except NotFound:
        return
    if theirs_desc.digest == ours.digest:
        return
    theirs = Ledger.parse(name, target.get_manifest(theirs_desc))
    mine = Ledger.parse(name, local.get_manifest(ours))

    def key(stream: Ledger) -> list[tuple[int, str]]:
        return [(r.number, r.image.digest.text) for r in stream.releases]

    if theirs.last > mine.last or key(mine)[: len(key(theirs))] != key(theirs):
        raise RegfpError(f"the registry's {ledger} has releases this layout does not (theirs up to "
                         f"r{theirs.last}, ours up to r{mine.last}): another machine cut them. Pushing would "
                         "rewrite the stream; build with the same --cache to share the ledger, then push")
