"""Pushing a recipe's images to registries: where each name goes, and what may never go there.

Names go under the recipe's ``push.prefix``; an environment with its own ``push.prefix`` receives its
images as ``<prefix>/app/<name>:<tag>`` (its registry is the environment's). Images that carry a private
key (``dev.regfp.contains-secret``) go only to targets marked ``private: true``; debug images only to
``ad-hoc/`` names. Everything is checked before the first byte is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInput
from ..oci.descriptor import Descriptor
from ..stores.base import Store, manifest_annotations
from .load import LoadedRecipe


@dataclass(frozen=True)
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
            if ann.get("dev.regfp.contains-secret") == "true" and not target.private:
                raise InvalidInput(f"{name} carries a private key (dev.regfp.contains-secret) and {target.prefix} "
                                   "is not marked private: true in the recipe; refusing to push it")
            if ann.get("dev.regfp.debug") == "true" and not is_dev_target(target.name.rpartition(":")[0]):
                raise InvalidInput(f"{name} is a debug image; debug images only go to ad-hoc/ names")
