"""Pure Image -> Image operations. Nothing here reads or writes a blob: layers are carried by descriptor.

``rebase`` swaps the base under an image the way ``crane rebase`` and ``pack rebase`` do, but checks
more: the old base's layers, diff_ids and history must be a prefix of the image's (layers by digest,
or by diff_id where a builder re-encoded them), and config fields the application did not change
follow the new base.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from .errors import InvalidInput, RegfpError
from .oci.config import History, ImageConfig
from .oci.image import Image

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
CHANNEL = "dev.regfp.channel"

# Config fields that describe the image as a whole and always come from the application.
_APP_OWNED = frozenset({"created", "author", "rootfs", "history", "config"})
# Platform fields: must agree between the image and the new base (os.version may move with the base).
_PLATFORM = ("os", "architecture", "variant")


_ABSENT: Any = object()  # a key that is not there, as opposed to one set to null or empty


class RebaseError(RegfpError):
    """The image is not built on the base it was said to be built on (exit 1: the inputs disagree)."""


class PlatformMismatch(InvalidInput):
    pass


def base_prefix_problem(image: Image, base: Image, *, by_diff_id: bool = False) -> str | None:
    """Why ``base`` is not a prefix of ``image`` (the first mismatching layer), or None when it is.

    With ``by_diff_id``, a base layer the image holds under another digest but with the same diff_id
    still matches: buildah and podman re-encode the base layers they commit (same tar, new blob)."""
    if len(base.layers) > len(image.layers):
        return f"the base has {len(base.layers)} layers, the image only {len(image.layers)}"
    for i, (want, have) in enumerate(zip(base.layers, image.layers, strict=False)):
        re_encoded = by_diff_id and want.diff_id is not None and want.diff_id == have.diff_id
        if want.digest != have.digest and not re_encoded:
            return f"layer {i}: the image has {have.digest}, the base {want.digest}"
        if want.diff_id != have.diff_id:
            return f"layer {i} ({have.digest}): diff_id {have.diff_id} differs from the base's {want.diff_id}"
    base_hist = base.config.history
    img_hist = image.config.history
    if base_hist and img_hist[: len(base_hist)] != base_hist:
        for i, (a, b) in enumerate(zip(base_hist, img_hist, strict=False)):
            if a != b:
                return f"history entry {i} differs from the base's ({b.created_by!r} vs {a.created_by!r})"
        return f"the image has fewer history entries than the base ({len(img_hist)} < {len(base_hist)})"
    return None


BaseMatch = Literal["digest", "diff_id"]


def match_base(image: Image, base: Image) -> BaseMatch:
    """How ``base`` is found under ``image``: layer for layer by digest (what crane checks), else by
    diff_id and history, when the image holds the base's layers re-encoded (buildah, podman). Raises
    ``RebaseError`` naming the first mismatch when neither holds."""
    if base_prefix_problem(image, base) is None:
        return "digest"
    problem = base_prefix_problem(image, base, by_diff_id=True)
    if problem is None:
        return "diff_id"
    raise RebaseError(f"the image is not built on the given old base ({base.digest}): {problem}")


def rebase(image: Image, old_base: Image, new_base: Image, *, base_name: str,
           channel: str | None = None) -> Image:
    """``image`` moved from ``old_base`` onto ``new_base``; only config and manifest change. The old
    base's layers may be in the image re-encoded (see ``match_base``): they are replaced all the same."""
    match_base(image, old_base)
    for field in _PLATFORM:
        have, want = image.config.doc.get(field), new_base.config.doc.get(field)
        if have != want:
            raise PlatformMismatch(f"the new base is {field} {want!r} but the image is {field} {have!r}; "
                                   "pick the matching platform of the base")
    app_layers = image.layers[len(old_base.layers):]
    app_history = image.config.history[len(old_base.config.history):] if old_base.config.history else \
        _app_history(image, len(old_base.layers))
    history: tuple[History, ...] = (*new_base.config.history, *app_history)
    config = _merge_config(image.config, old_base.config, new_base.config)
    rebased = image.with_config(config).with_layers((*new_base.layers, *app_layers), history)
    annotations: dict[str, str] = {BASE_NAME: base_name, BASE_DIGEST: new_base.digest.text}
    if channel is not None:
        annotations[CHANNEL] = channel
        return rebased.with_annotations(annotations)
    return rebased.with_annotations(annotations).without_annotations(CHANNEL)


def _app_history(image: Image, base_layers: int) -> tuple[History, ...]:
    """The application's history entries when the base recorded none: skip one per base layer."""
    out = list(image.config.history)
    skipped = 0
    while out and skipped < base_layers:
        entry = out.pop(0)
        if not entry.empty_layer:
            skipped += 1
    return tuple(out)


def _merge_config(app: ImageConfig, old: ImageConfig, new: ImageConfig) -> ImageConfig:
    doc = dict(app.doc)
    for key in set(app.doc) | set(old.doc) | set(new.doc):
        if key in _APP_OWNED:
            continue
        doc_value = _follow(app.doc.get(key, _ABSENT), old.doc.get(key, _ABSENT), new.doc.get(key, _ABSENT))
        if doc_value is _ABSENT:
            doc.pop(key, None)
        else:
            doc[key] = doc_value
    container: dict[str, Any] = {}
    a, o, n = app.container, old.container, new.container
    for key in sorted(set(a) | set(o) | set(n)):
        if key == "Env":
            value: Any = _merge_env(a.get("Env") or (), o.get("Env") or (), n.get("Env") or ())
        elif key in ("Labels", "ExposedPorts", "Volumes"):
            value = _merge_map(a.get(key) or {}, o.get(key) or {}, n.get(key) or {})
        elif key == "Cmd" and a.get("Entrypoint", _ABSENT) != o.get("Entrypoint", _ABSENT):
            value = a.get("Cmd", _ABSENT)  # as in a Dockerfile: an app's own entrypoint owns the command
        else:
            value = _follow(a.get(key, _ABSENT), o.get(key, _ABSENT), n.get(key, _ABSENT))
        # An empty value stays only where the side it follows had the key (e.g. an explicit "Env": []).
        source = n if a.get(key, _ABSENT) == o.get(key, _ABSENT) else a
        if value is _ABSENT or (value in ({}, [], ()) and key not in source):
            continue
        container[key] = value
    doc["config"] = container
    return ImageConfig.from_dict(doc)


def _follow(app: Any, old: Any, new: Any) -> Any:
    """What the application did not change follows the base; what it changed stays."""
    return new if app == old else app


def _merge_map(app: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in list(new) + [k for k in app if k not in new]:
        if key in app and (key not in old or app[key] != old[key]):
            out[key] = app[key]  # set or changed by the application
        elif key in new:
            out[key] = new[key]
    return dict(sorted(out.items()))


def _merge_env(app: tuple[str, ...], old: tuple[str, ...], new: tuple[str, ...]) -> list[str]:
    """The new base's variables in its order (the app's value where it changed one), then the app's own
    sorted by name, which is how ``build`` lays them out, so A -> B -> A gives back the same list.

    A variable the app set to exactly the old base's value cannot be told apart from an inherited one;
    it follows the base.
    """
    def parse(env: tuple[str, ...]) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in env)

    a, o, n = parse(app), parse(old), parse(new)
    out = []
    for key, value in n.items():
        changed = key in a and (key not in o or a[key] != o[key])
        if changed:
            out.append(f"{key}={a[key]}")
        elif key in a or key not in o:
            out.append(f"{key}={value}")
        # else: the old base had it, the app kept it unchanged, the new base dropped it: drop it too
    for key in sorted(a):
        if key in n:
            continue
        if key in o and a[key] == o[key]:
            continue  # inherited from the old base, gone from the new one
        out.append(f"{key}={a[key]}")
    return out


# ---- Cloud Native Buildpacks images ------------------------------------------------------------------

CNB_METADATA = "io.buildpacks.lifecycle.metadata"
CNB_STACK_ID = "io.buildpacks.stack.id"
_CNB_SYNCED = ("io.buildpacks.stack.", "io.buildpacks.base.")


def cnb_metadata(image: Image) -> dict[str, Any] | None:
    """The lifecycle metadata label as JSON, or None when the image was not built by buildpacks."""
    import json

    raw = image.config.labels.get(CNB_METADATA)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise RebaseError(f"the {CNB_METADATA} label is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("runImage"), dict):
        raise RebaseError(f"the {CNB_METADATA} label has no runImage object")
    return doc


def rebase_cnb(image: Image, new_base: Image, *, base_name: str, reference: str, channel: str | None = None) -> Image:
    """Rebase an image built by the CNB lifecycle, as its rebaser does, when it has no OCI base annotations.

    Read: ``runImage.topLayer`` (diff_id of the run image's top layer) locates the run-image layers;
    ``io.buildpacks.stack.id`` must agree with the new run image's when both have one. Written:
    ``runImage.topLayer`` (the new run image's top diff_id), ``runImage.reference`` (``reference``, the
    new run image's digest reference), ``runImage.image`` when the label has one and it differs (mirrors
    are then cleared), and the ``io.buildpacks.stack.*``/``io.buildpacks.base.*`` labels copied from the
    new run image. The application's other config is kept as is.
    """
    import json

    meta = cnb_metadata(image)
    if meta is None:
        raise RebaseError(f"the image has no {CNB_METADATA} label")
    top = meta["runImage"].get("topLayer")
    diff_ids = [d.text for d in image.config.diff_ids]
    if not isinstance(top, str) or top not in diff_ids:
        raise RebaseError(f"runImage.topLayer {top!r} is not one of the image's layers")
    cut = diff_ids.index(top) + 1
    for field in _PLATFORM:
        if image.config.doc.get(field) != new_base.config.doc.get(field):
            raise PlatformMismatch(f"the new run image is {field} {new_base.config.doc.get(field)!r}, the app "
                                   f"{image.config.doc.get(field)!r}")
    app_stack, new_stack = image.config.labels.get(CNB_STACK_ID), new_base.config.labels.get(CNB_STACK_ID)
    if app_stack and new_stack and app_stack != new_stack:
        raise RebaseError(f"incompatible stack: the new run image is {new_stack!r}, the app {app_stack!r}")
    if not new_base.layers:
        raise RebaseError("the new run image has no layers")
    app_layers = image.layers[cut:]
    history = _app_history(image, cut)
    meta["runImage"]["topLayer"] = new_base.layers[-1].diff_id.text if new_base.layers[-1].diff_id else ""
    meta["runImage"]["reference"] = reference
    if "image" in meta["runImage"] and meta["runImage"]["image"] != base_name:
        meta["runImage"]["image"] = base_name
        meta["runImage"]["mirrors"] = []
    labels = {k: v for k, v in image.config.labels.items() if not k.startswith(_CNB_SYNCED)}
    labels.update({k: v for k, v in new_base.config.labels.items() if k.startswith(_CNB_SYNCED)})
    labels[CNB_METADATA] = json.dumps(meta, separators=(",", ":"))
    config = image.config.with_container(Labels=dict(sorted(labels.items())))
    rebased = image.with_config(config).with_layers((*new_base.layers, *app_layers),
                                                    (*new_base.config.history, *history))
    annotations = {BASE_NAME: base_name, BASE_DIGEST: new_base.digest.text}
    if channel is not None:
        annotations[CHANNEL] = channel
    return rebased.with_annotations(annotations)
