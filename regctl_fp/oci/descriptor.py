"""Descriptors and platforms: the typed pointers that link manifests, indexes and blobs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, replace
from typing import Any

from ..values import valueclass
from .digest import Digest
from .errors import InvalidDigest, InvalidDocument
from .frozen import EMPTY, FrozenDict, frozen_str_map

_MEDIA_TYPE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&-^_.+/")


def check_media_type(value: object, what: str) -> str:
    if not isinstance(value, str) or "/" not in value or not set(value) <= _MEDIA_TYPE_CHARS:
        raise InvalidDocument(what, f"malformed media type {value!r}")
    return value


def _str_map(value: object, what: str) -> FrozenDict[str, str]:
    if value is None:
        return EMPTY
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidDocument(what, "annotations must map strings to strings")
    return frozen_str_map(value)


@valueclass
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()
    features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]``, as in ``linux/arm64/v8``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform {text!r} is not os/arch[/variant]")
        return cls(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_dict(cls, doc: object, what: str = "platform") -> Platform:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("os"), str) or not isinstance(
            doc.get("architecture"), str
        ):
            raise InvalidDocument(what, "platform needs string 'os' and 'architecture'")
        for key in ("variant", "os.version"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise InvalidDocument(what, f"platform {key!r} must be a string")
        for key in ("os.features", "features"):
            value = doc.get(key)
            if value is not None and (not isinstance(value, (list, tuple))
                                      or not all(isinstance(v, str) for v in value)):
                raise InvalidDocument(what, f"platform {key!r} must be a list of strings")
        return cls(
            os=doc["os"],
            architecture=doc["architecture"],
            variant=doc.get("variant") or None,
            os_version=doc.get("os.version") or None,
            os_features=tuple(doc.get("os.features") or ()),
            features=tuple(doc.get("features") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.features:
            out["features"] = list(self.features)
        return out

    def matches(self, want: Platform) -> bool:
        """True when this platform satisfies ``want`` (an unset variant in ``want`` matches any)."""
        if (self.os, self.architecture) != (want.os, want.architecture):
            return False
        return want.variant is None or normalize_variant(self) == normalize_variant(want)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def normalize_variant(p: Platform) -> str | None:
    if p.architecture == "arm64" and p.variant in (None, "v8"):
        return "v8"
    return p.variant


@valueclass
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: FrozenDict[str, str] = field(default=EMPTY)
    platform: Platform | None = None
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()
    data: str | None = None  # base64, as in the spec; rarely used

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise InvalidDocument("descriptor", f"size must be a non-negative integer, not {self.size!r}")
        # Untyped callers (tests, scripts) may pass a plain dict: frozen, the descriptor stays a hashable value.
        frozen = frozen_str_map(self.annotations)
        if frozen is not self.annotations:
            object.__setattr__(self, "annotations", frozen)

    @classmethod
    def from_dict(cls, doc: object, what: str = "descriptor") -> Descriptor:
        if not isinstance(doc, Mapping):
            raise InvalidDocument(what, "a descriptor must be a JSON object")
        size = doc.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidDocument(what, f"size must be an integer, not {size!r}")
        try:
            digest = Digest.parse(doc.get("digest"))
        except InvalidDigest as e:
            raise InvalidDocument(what, e.message) from None
        platform = doc.get("platform")
        urls = doc.get("urls") or ()
        if not isinstance(urls, (list, tuple)) or not all(isinstance(u, str) for u in urls):
            raise InvalidDocument(what, "urls must be a list of strings")
        artifact_type = doc.get("artifactType")
        return cls(
            media_type=check_media_type(doc.get("mediaType"), what),
            digest=digest,
            size=size,
            annotations=_str_map(doc.get("annotations"), what),
            platform=Platform.from_dict(platform, what) if platform is not None else None,
            artifact_type=check_media_type(artifact_type, what) if artifact_type is not None else None,
            urls=tuple(urls),
            data=doc.get("data") if isinstance(doc.get("data"), str) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest.text, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.urls:
            out["urls"] = list(self.urls)
        if self.data is not None:
            out["data"] = self.data
        return out

    def with_annotations(self, annotations: Mapping[str, str]) -> Descriptor:
        """A copy whose annotations are exactly ``annotations``."""
        return replace(self, annotations=frozen_str_map(annotations))

    def annotated(self, **extra: str) -> Descriptor:
        return self.with_annotations({**self.annotations, **extra})

    @property
    def ref_name(self) -> str | None:
        return self.annotations.get("org.opencontainers.image.ref.name")
