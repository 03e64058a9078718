"""The source a recipe's chain stands on: a Git commit (build), or an existing image (patch.from)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import RecipeError, RegfpError
from ..gitsource import Commit, Repository
from ..recipe.load import LoadedRecipe
from ..recipe.model import fragment
from ..refs import check_tag
from ..values import valueclass
from .keys import stage_key


@valueclass
class Source:
    repo: Repository | None  # None for patch.from
    repo_name: str  # <repo> in image names
    commit: Commit  # for patch.from: the image's digest hex stands in for the commit
    base_ref: str  # the build's base (channels followed), or patch.from's image
    channel: str | None  # the channel the build's base is, if it is one
    fragment: Any  # the build's recipe fragment (goes into its key)
    from_image: str | None = None  # patch.from: the digest of the image patched instead of a build

    @property
    def build_names(self) -> tuple[str, ...]:
        if self.from_image is not None:
            return (f"from/{self.repo_name}:{self.commit.sha}",)
        names = [f"build/{self.repo_name}:{self.commit.sha}"]
        if self.commit.tag is not None and _valid_tag(self.commit.tag):
            names.append(f"build/{self.repo_name}:{self.commit.tag}")
        return tuple(names)

    def build_key(self, base_digest: str) -> str:
        return stage_key("build", self.fragment, {"base": {"name": self.base_ref, "digest": base_digest}},
                         self.commit.sha)

    def platforms_build_key(self, bases: Mapping[str, tuple[str, str]]) -> str:
        """A multi-platform build's key: each platform's base (reference, digest), so the platform set
        is part of it."""
        return stage_key("build", self.fragment, {"platforms": {p: {"name": name, "digest": digest}
                                                                for p, (name, digest) in bases.items()}},
                         self.commit.sha)

    def patch_name(self, channel: str) -> str:
        return f"patch/{self.repo_name}/{self.commit.sha}:{channel}"


def open_source(lr: LoadedRecipe, *, git_cache: Any, from_digest: str | None) -> Source | None:
    """The recipe's source (None for a recipe of matrix/work/data sections only). ``from_digest`` is
    the digest patch.from's image resolved to (the caller loads images)."""
    r = lr.recipe
    if r.build is not None and r.source is not None:
        repo = Repository.open(r.source.git, base=lr.directory, cache=git_cache)
        commit = repo.resolve(r.source.ref)
        base = r.build.base
        channel = base if r.patch and isinstance(base, str) and base in r.patch.channels else None
        frag = {"build": fragment(r.build),
                "source": {k: v for k, v in (("subdir", r.source.subdir), ("url", r.source.url)) if v}}
        return Source(repo, repo_name(lr, repo), commit, lr.base_ref(), channel, frag)
    if from_digest is not None:
        commit = Commit(from_digest.split(":", 1)[1], 0, None)
        return Source(None, repo_name(lr, None), commit, lr.base_ref(), None, {"from": lr.base_ref()},
                      from_image=from_digest)
    return None


def repo_name(lr: LoadedRecipe, repo: Repository | None) -> str:
    """``<repo>`` in image names: source.name, else the repository's basename in the OCI name grammar
    (the recipe's name for a recipe that patches an existing image)."""
    source = lr.recipe.source
    if source is None or repo is None:
        return lr.recipe.name
    if source.name:
        return source.name
    name = re.sub(r"[^a-z0-9._-]+", "-", repo.basename.lower())
    name = re.sub(r"[._-]{2,}", "-", name).strip("._-")
    if not name:
        raise RecipeError(str(lr.path), lr.doc.line(("source",)), f"cannot derive an image name from repository "
                          f"{repo.basename!r}; set source.name", "source.name")
    return name


def _valid_tag(tag: str) -> bool:
    try:
        check_tag(tag)
    except RegfpError:
        return False
    return True
