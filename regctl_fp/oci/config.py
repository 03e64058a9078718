"""The image configuration (OCI image-spec config.md), kept as a frozen JSON document.

Fields regfp understands have typed accessors and ``with_*`` updates; every other field (e.g. Docker's
``container_config``) is preserved untouched, so a read-modify-write never drops data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

from ..values import valueclass
from .canonical import canonical_json
from .descriptor import Platform
from .digest import Digest
from .errors import InvalidDigest, InvalidDocument
from .frozen import EMPTY, FrozenDict, JSONObject, freeze, thaw

_HISTORY_KEYS = ("created", "created_by", "author", "comment", "empty_layer")


@valueclass
class History:
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False
    extra: JSONObject = EMPTY  # fields other tools wrote; kept so a rewrite of the history drops nothing

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = thaw(self.extra)
        for key, value in (("created", self.created), ("created_by", self.created_by),
                           ("author", self.author), ("comment", self.comment)):
            if value is not None:
                out[key] = value
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> History:
        return cls(created=doc.get("created"), created_by=doc.get("created_by"), author=doc.get("author"),
                   comment=doc.get("comment"), empty_layer=bool(doc.get("empty_layer", False)),
                   extra=freeze({k: v for k, v in doc.items() if k not in _HISTORY_KEYS}))


def _check(doc: Mapping[str, Any]) -> None:
    what = "image config"
    rootfs = doc.get("rootfs")
    if rootfs is not None:
        if not isinstance(rootfs, Mapping) or rootfs.get("type") != "layers":
            raise InvalidDocument(what, "rootfs.type must be 'layers'")
        ids = rootfs.get("diff_ids")
        if not isinstance(ids, (list, tuple)):
            raise InvalidDocument(what, "rootfs.diff_ids must be a list")
        for item in ids:
            try:
                Digest.parse(item)
            except InvalidDigest as e:
                raise InvalidDocument(what, f"rootfs.diff_ids: {e.message}") from None
    cfg = doc.get("config")
    if cfg is not None and not isinstance(cfg, Mapping):
        raise InvalidDocument(what, "'config' must be an object")
    hist = doc.get("history")
    if hist is not None and (not isinstance(hist, (list, tuple)) or not all(isinstance(h, Mapping) for h in hist)):
        raise InvalidDocument(what, "'history' must be a list of objects")
    for key in ("architecture", "os", "created", "variant", "author"):
        if key in doc and doc[key] is not None and not isinstance(doc[key], str):
            raise InvalidDocument(what, f"'{key}' must be a string")
    if cfg:
        for key in ("Env", "Entrypoint", "Cmd"):
            v = cfg.get(key)
            if v is not None and (not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v)):
                raise InvalidDocument(what, f"config.{key} must be a list of strings")
        for key in ("Labels",):
            v = cfg.get(key)
            if v is not None and (not isinstance(v, Mapping) or not all(isinstance(s, str) for s in v.values())):
                raise InvalidDocument(what, f"config.{key} must map strings to strings")


@valueclass
class ImageConfig:
    doc: JSONObject

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ImageConfig:
        if not isinstance(doc, Mapping):
            raise InvalidDocument("image config", "must be a JSON object")
        _check(doc)
        return cls(freeze(doc))

    @classmethod
    def new(cls, *, os: str = "linux", architecture: str = "amd64", variant: str | None = None,
            created: str | None = None) -> ImageConfig:
        doc: dict[str, Any] = {"architecture": architecture, "os": os,
                               "rootfs": {"type": "layers", "diff_ids": []}, "config": {}, "history": []}
        if variant:
            doc["variant"] = variant
        if created:
            doc["created"] = created
        return cls(freeze(doc))

    def to_bytes(self) -> bytes:
        return canonical_json(self.doc)

    # -- accessors -----------------------------------------------------------------------------
    @property
    def os(self) -> str:
        return self.doc.get("os") or ""

    @property
    def architecture(self) -> str:
        return self.doc.get("architecture") or ""

    @property
    def variant(self) -> str | None:
        return self.doc.get("variant")

    @property
    def platform(self) -> Platform:
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant,
                        os_version=self.doc.get("os.version"))

    @property
    def created(self) -> str | None:
        return self.doc.get("created")

    @property
    def container(self) -> JSONObject:
        return self.doc.get("config") or EMPTY

    @cached_property
    def diff_ids(self) -> tuple[Digest, ...]:
        rootfs = self.doc.get("rootfs") or EMPTY
        return tuple(Digest.parse(d) for d in rootfs.get("diff_ids", ()))

    @property
    def history(self) -> tuple[History, ...]:
        return tuple(History.from_dict(h) for h in self.doc.get("history") or ())

    @property
    def env(self) -> tuple[str, ...]:
        return tuple(self.container.get("Env") or ())

    @property
    def env_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    @property
    def entrypoint(self) -> tuple[str, ...] | None:
        v = self.container.get("Entrypoint")
        return None if v is None else tuple(v)

    @property
    def cmd(self) -> tuple[str, ...] | None:
        v = self.container.get("Cmd")
        return None if v is None else tuple(v)

    @property
    def labels(self) -> FrozenDict[str, str]:
        return self.container.get("Labels") or EMPTY

    @property
    def user(self) -> str:
        return self.container.get("User") or ""

    @property
    def workdir(self) -> str:
        return self.container.get("WorkingDir") or ""

    # -- updates (each returns a new config) -----------------------------------------------------
    def with_fields(self, **fields: Any) -> ImageConfig:
        """Top-level fields set (``None`` deletes a field)."""
        doc = thaw(self.doc)
        for key, value in fields.items():
            key = {"os_version": "os.version"}.get(key, key)
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        return ImageConfig.from_dict(doc)

    def with_container(self, **fields: Any) -> ImageConfig:
        """Fields of the ``config`` object set by their OCI names (``Env``, ``Cmd``...); ``None`` deletes."""
        doc = thaw(self.doc)
        cfg = doc.get("config") or {}  # Docker writes "config": null for images without settings
        doc["config"] = cfg
        for key, value in fields.items():
            if value is None:
                cfg.pop(key, None)
            else:
                cfg[key] = thaw(value)
        return ImageConfig.from_dict(doc)

    def with_env(self, updates: Mapping[str, str]) -> ImageConfig:
        """Variables set or replaced, existing order kept, new names appended in sorted order."""
        current = list(self.env)
        index = {item.partition("=")[0]: i for i, item in enumerate(current)}
        for key in sorted(updates):
            entry = f"{key}={updates[key]}"
            if key in index:
                current[index[key]] = entry
            else:
                current.append(entry)
        return self.with_container(Env=current)

    def with_labels(self, labels: Mapping[str, str]) -> ImageConfig:
        return self.with_container(Labels={**self.labels, **labels} or None)

    def with_layers(self, diff_ids: Sequence[Digest], history: Iterable[History]) -> ImageConfig:
        """``rootfs.diff_ids`` and ``history`` replaced wholesale."""
        return self.with_fields(
            rootfs={"type": "layers", "diff_ids": [d.text for d in diff_ids]},
            history=[h.to_dict() for h in history],
        )

    def with_appended_layer(self, diff_id: Digest, history: History) -> ImageConfig:
        return self.with_layers((*self.diff_ids, diff_id), (*self.history, history))
