"""Loading a recipe: read, parse strictly, then check what types alone cannot (channels, names, paths).

Every problem is a RecipeError naming file:line and the key path; nothing is written while loading.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ..errors import InputFileError, RecipeError, RefError
from ..refs import DirRef, LayoutRef, Ref, parse_ref
from ..regularfile import read_regular
from ..values import valueclass
from .checks import check_same_platforms, check_units
from .model import Recipe
from .platforms import Refs, duplicate, parse_platform
from .schema import Converter, json_schema
from .yamlsrc import Document, KeyPath, load_yaml

FORMAT = 1
MAX_SIZE = 1 << 20


@valueclass
class LoadedRecipe:
    recipe: Recipe
    path: Path  # absolute path of the recipe file
    doc: Document

    @property
    def directory(self) -> Path:
        return self.path.parent

    def password_vars(self) -> list[str]:
        """The environment variables the recipe names for its keys' passwords (read at the CLI edge)."""
        found = {e.identity.key_password_env for e in self.recipe.environments
                 if e.identity is not None and e.identity.key_password_env}
        attest = self.recipe.attest
        if attest is not None and attest.key_password_env:
            found.add(attest.key_password_env)
        return sorted(found)

    def resolve(self, relative: str) -> Path:
        """A recipe-relative path made absolute (``..`` allowed: recipes often point at their repo)."""
        return (self.directory / relative).resolve() if not Path(relative).is_absolute() else Path(relative)

    def error(self, key_path: KeyPath, message: str) -> RecipeError:
        return self.doc.error(key_path, message)

    @property
    def output_layout(self) -> Path:
        return self.resolve(self.recipe.output.layout)

    def channel_refs(self, channel: str) -> Refs:
        """The image reference(s) a channel (or a reference given in its place) stands for, following
        aliases (checked acyclic at load)."""
        channels = self.recipe.patch.channels if self.recipe.patch else {}
        seen = set()
        value: str | Mapping[str, str] = channel
        while isinstance(value, str) and value in channels and value not in seen:
            seen.add(value)
            value = channels[value]
        return Refs.of(value)

    def channel_ref(self, channel: str) -> str:
        """The image reference a channel stands for (a per-platform mapping as its canonical text)."""
        return self.channel_refs(channel).text

    def base_refs(self) -> Refs:
        """The build's base (or patch.from's image), for every platform or per platform."""
        r = self.recipe
        if r.build is None:
            assert r.patch is not None and r.patch.from_ is not None
            return Refs.of(r.patch.from_)
        return self.channel_refs(r.build.base) if isinstance(r.build.base, str) else Refs.of(r.build.base)

    def image_ref(self, text: str) -> Ref:
        """A reference from the recipe, its local paths taken relative to the recipe file. A ``dir:``
        that is not a directory is the recipe's fault: a RecipeError naming the line that says it."""
        ref = parse_ref(text)
        if isinstance(ref, DirRef):
            path = self.resolve(ref.path)
            if not path.is_dir():
                where = next((kp for kp, value in _named_refs(self) if value == text), ())
                problem = "not a directory" if path.exists() else "no such directory"
                raise self.error(where, f"{text}: {problem} ({path})")
            return DirRef(str(path))
        if isinstance(ref, LayoutRef):
            return replace(ref, path=str(self.resolve(ref.path)))
        return ref

    def base_ref(self) -> str:
        """The build's base, or (for a recipe that patches an existing image) that image; a per-platform
        mapping as its canonical text."""
        return self.base_refs().text


def load_recipe(path: str | Path) -> LoadedRecipe:
    p = Path(path)
    shown = str(path)
    try:
        data = read_regular(p, MAX_SIZE, "recipe")
    except FileNotFoundError:
        raise RecipeError(shown, None, "no such file") from None
    except InputFileError as e:
        if p.is_dir():
            raise RecipeError(shown, None, "is a directory, not a recipe file") from None
        raise RecipeError(shown, None, e.reason) from None
    except OSError as e:
        raise RecipeError(shown, None, f"cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(shown, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    doc = load_yaml(text, shown)
    if not isinstance(doc.value, dict):
        raise doc.error((), "a recipe must be a mapping of keys (regfp, name, source, build, ...)")
    version = doc.value.get("regfp")
    if version is None:
        raise doc.error((), "missing 'regfp: 1' (the recipe format version)")
    if version != FORMAT or isinstance(version, bool):
        raise doc.error(("regfp",), f"unsupported recipe format {version!r}; this regfp reads format {FORMAT}")
    recipe = Converter(doc).model(Recipe, doc.value, ())
    loaded = LoadedRecipe(recipe, p.resolve(), doc)
    _check(loaded)
    return loaded


def _check(lr: LoadedRecipe) -> None:
    r = lr.recipe
    _check_platforms(lr)
    channels = dict(r.patch.channels) if r.patch else {}
    for name, target in channels.items():
        kp = ("patch", "channels", name)
        if not _is_channel_name(name):
            raise lr.error(kp, f"{name!r} is not a valid channel name (lowercase, digits, '.', '_', '-')")
        if not isinstance(target, str):
            _check_per_platform(lr, kp, target, channels)
            continue
        seen = [name]
        value: str | Mapping[str, str] = target
        while isinstance(value, str) and value in channels:
            if value in seen:
                raise lr.error(kp, f"channel {name!r} is cyclic: {' -> '.join([*seen, value])}")
            seen.append(value)
            value = channels[value]
        if isinstance(value, str):
            _check_ref(lr, kp, value, channels)
    from_image = r.patch.from_ if r.patch is not None else None
    if from_image is None:
        for key, other in (("source", "build"), ("build", "source")):
            if getattr(r, key) is None and (getattr(r, other) is not None or r.rollouts or r.environments
                                            or r.debug):
                raise lr.error((), f"missing required key {key!r} (or patch.from, to patch an existing image)")
        if r.source is None and not (r.matrix or r.work):
            raise lr.error((), "a recipe needs source and build (a Git commit to build), patch.from (an image "
                               "to patch), or matrix/work sections")
    elif r.source is not None or r.build is not None:
        raise lr.error(("patch", "from"), "patch.from patches an existing image: drop source and build, or "
                                          "patch.from")
    else:
        _check_ref(lr, ("patch", "from"), from_image, channels)
    if r.build is not None:
        _check_base(lr, ("build", "base"), r.build.base, channels)
        _check_dependencies(lr)
    if r.rollouts is not None and r.rollouts.channel not in channels:
        raise lr.error(("rollouts", "channel"), _unknown_channel(r.rollouts.channel, channels))
    if r.rollouts is not None and r.rollouts.keep < 1:
        raise lr.error(("rollouts", "keep"), "keep must be at least 1")
    seen_env: dict[tuple[str, str], int] = {}
    for i, env in enumerate(r.environments):
        where = (env.location, env.environment)
        if where in seen_env:
            raise lr.error(("environments", i), f"{env.location}.{env.environment} is listed twice "
                                                f"(also entry {seen_env[where]})")
        seen_env[where] = i
        for j, ref in enumerate(env.polyfills):
            _check_ref(lr, ("environments", i, "polyfills", j), ref, channels)
        _check_generated_paths(lr, i)
    if r.debug is not None and r.debug.tools is not None:
        _check_ref(lr, ("debug", "tools"), r.debug.tools, channels)
    if r.source is not None and not r.source.git:
        raise lr.error(("source", "git"), "source.git must name a repository")
    check_units(lr)


def _check_generated_paths(lr: LoadedRecipe, i: int) -> None:
    """An environment's ``files`` must not collide with what the environment stage writes itself (each
    path is already checked for its form by the model)."""
    env = lr.recipe.environments[i]
    if not env.files:
        return
    from ..stages.environment import CA_BUNDLES, PLATFORM_JSON
    from ..stages.validity import IDENTITY_DIR

    generated = {PLATFORM_JSON: "the environment's platform.json"}
    if env.identity is not None:
        generated.update({f"{IDENTITY_DIR}/{name}": "the identity" for name in ("tls.key", "tls.crt", "ca.crt")})
    if env.ca_certs:
        generated.update({bundle: "the merged CA bundle (caCerts)" for bundle in CA_BUNDLES})
    for image_path in env.files:
        mine = image_path.strip("/")
        for path, what in generated.items():
            if path == mine or path.startswith(mine + "/"):
                raise lr.error(("environments", i, "files", image_path),
                               f"{image_path!r} collides with /{path}, which holds {what}")


def _check_dependencies(lr: LoadedRecipe) -> None:
    """Each dependency path must lie inside a copy rule's ``from``: the dependency layer holds those files
    where the copy rules put them, and a path no rule copies would silently stay out of the image."""
    import posixpath

    build = lr.recipe.build
    assert build is not None

    def norm(path: str) -> str:
        p = posixpath.normpath(path) if path else "."
        return "" if p == "." else p

    froms = [norm(rule.from_) for rule in build.copy]
    for i, dep in enumerate(build.dependencies):
        d = norm(dep)
        if any(f == "" or d == f or d.startswith(f + "/") for f in froms):
            continue
        inside = [rule.from_ for rule, f in zip(build.copy, froms, strict=True) if not d or f.startswith(d + "/")]
        if inside:
            message = (f"only part of dependency {dep!r} is copied (copy from {', '.join(map(repr, inside))}); "
                       f"copy all of it, or list what is copied as the dependency")
        else:
            shown = ", ".join(repr(rule.from_) for rule in build.copy) or "none"
            message = (f"dependency {dep!r} is not under any copy rule's 'from' ({shown}), so it would not be "
                       f"in the image; add a copy rule for it (e.g. {{from: {dep}, to: /app/{d}}}) or drop it")
        raise lr.error(("build", "dependencies", i), message)


def _check_platforms(lr: LoadedRecipe) -> None:
    """``platforms`` names each platform once, and every per-platform mapping of the recipe has an image
    for each of them and for no other (a platform listed but not mapped would be built on nothing)."""
    r = lr.recipe
    listed = [parse_platform(p) for p in r.platforms]
    twice = duplicate(listed)
    if twice is not None:
        at = next(i for i, p in enumerate(listed) if p is twice[1])
        raise lr.error(("platforms", at), f"{twice[1]} is listed twice (as {twice[0]} too)")
    maps: list[tuple[KeyPath, Mapping[str, str]]] = []
    if r.build is not None and not isinstance(r.build.base, str):
        maps.append((("build", "base"), r.build.base))
    if r.patch is not None:
        maps += [(("patch", "channels", n), v) for n, v in r.patch.channels.items() if not isinstance(v, str)]
    if not maps:
        return
    want, whose = (listed, "platforms") if listed else ([parse_platform(p) for p in maps[0][1]],
                                                        ".".join(map(str, maps[0][0])))
    for kp, mapping in maps:
        check_same_platforms(lr, kp, [parse_platform(p) for p in mapping], want, whose)


def _check_per_platform(lr: LoadedRecipe, kp: KeyPath, mapping: Mapping[str, str],
                        channels: Mapping[str, str | Mapping[str, str]]) -> None:
    if not mapping:
        raise lr.error(kp, "a per-platform mapping needs at least one platform: reference entry")
    twice = duplicate(parse_platform(p) for p in mapping)
    if twice is not None:
        raise lr.error((*kp, str(twice[1])), f"{twice[1]} is given twice (as {twice[0]} too)")
    for platform, ref in mapping.items():
        _check_ref(lr, (*kp, platform), ref, channels)


def _check_base(lr: LoadedRecipe, kp: KeyPath, value: str | Mapping[str, str],
                channels: Mapping[str, str | Mapping[str, str]]) -> None:
    if not isinstance(value, str):
        _check_per_platform(lr, kp, value, channels)
        return
    if value in channels:
        return
    if _looks_like_ref(value):
        _check_ref(lr, kp, value, channels)
        return
    raise lr.error(kp, _unknown_channel(value, channels) + " (or give an image reference such as "
                       "oci:PATH:NAME, dir:PATH or registry/repo:tag)")


def _check_ref(lr: LoadedRecipe, kp: KeyPath, value: str, channels: Mapping[str, object]) -> None:
    if not _looks_like_ref(value):
        raise lr.error(kp, _unknown_channel(value, channels) if channels else
                       f"{value!r} is not an image reference (oci:PATH:NAME, dir:PATH or registry/repo:tag)")
    try:
        parse_ref(value)
    except RefError as e:
        raise lr.error(kp, e.reason if e.ref == value else str(e)) from None


def _named_refs(lr: LoadedRecipe) -> list[tuple[KeyPath, str]]:
    """Every image reference the recipe spells out, with where it is written."""
    r = lr.recipe
    named: list[tuple[KeyPath, str]] = []
    if r.patch is not None:
        for name, value in r.patch.channels.items():
            named += [(("patch", "channels", name), value)] if isinstance(value, str) else \
                [(("patch", "channels", name, p), ref) for p, ref in value.items()]
        if r.patch.from_ is not None:
            named.append((("patch", "from"), r.patch.from_))
    if r.build is not None:
        named += [(("build", "base"), r.build.base)] if isinstance(r.build.base, str) else \
            [(("build", "base", p), ref) for p, ref in r.build.base.items()]
    for i, env in enumerate(r.environments):
        named += [(("environments", i, "polyfills", j), ref) for j, ref in enumerate(env.polyfills)]
    if r.debug is not None and r.debug.tools is not None:
        named.append((("debug", "tools"), r.debug.tools))
    for i, m in enumerate(r.matrix):
        for axis, values in m.axes.items():
            for v, ref in values.items():
                named += [(("matrix", i, "axes", axis, v), ref)] if isinstance(ref, str) else \
                    [(("matrix", i, "axes", axis, v, p), one) for p, one in ref.items()]
    for i, w in enumerate(r.work):
        if isinstance(w.base, str):
            named.append((("work", i, "base"), w.base))
        elif w.base is not None:
            named += [(("work", i, "base", p), one) for p, one in w.base.items()]
    return named


def _looks_like_ref(value: str) -> bool:
    return value.startswith(("oci:", "dir:", "docker://")) or "/" in value


def _is_channel_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", name) is not None


def _unknown_channel(value: str, channels: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(value, list(channels), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else (
        f" (channels: {', '.join(channels)})" if channels else " (the recipe defines no patch.channels)")
    return f"unknown channel {value!r}{hint}"


def recipe_schema() -> dict[str, object]:
    return json_schema(Recipe, title="regfp recipe (format 1)", schema_id="https://regfp.dev/schema/recipe-1.json")
