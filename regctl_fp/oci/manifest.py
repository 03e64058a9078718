"""Image manifests and image indexes: parse (OCI and Docker v2 schema 2), build, serialise."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from ..values import valueclass
from . import mediatypes as mt
from .canonical import canonical_json
from .descriptor import Descriptor, Platform, _str_map, check_media_type
from .errors import InvalidDocument
from .frozen import EMPTY, FrozenDict


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(data: bytes, what: str) -> Mapping[str, Any]:
    # ValueError covers malformed JSON, NaN/Infinity (which Python's json would otherwise accept and
    # canonical_json could not write back) and integers too long to convert; RecursionError, nesting.
    try:
        doc = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise InvalidDocument(what, f"not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise InvalidDocument(what, "top level must be a JSON object")
    return doc


def _media_type_of(doc: Mapping[str, Any], data_kind: str) -> str | None:
    value = doc.get("mediaType")
    if value is not None:
        check_media_type(value, data_kind)
    return value


def sniff_media_type(data: bytes) -> str:
    """The media type of a manifest or index document, from its own fields."""
    doc = parse_json(data, "manifest")
    declared = _media_type_of(doc, "manifest")
    if declared:
        return declared
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc or "layers" in doc:
        return mt.OCI_MANIFEST
    raise InvalidDocument("manifest", "neither an image manifest nor an index (no mediaType)")


@valueclass
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = mt.OCI_MANIFEST
    annotations: FrozenDict[str, str] = field(default=EMPTY)
    artifact_type: str | None = None
    subject: Descriptor | None = None

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Manifest:
        what = "image manifest"
        doc = parse_json(data, what)
        declared = _media_type_of(doc, what)
        kind = declared or media_type or mt.OCI_MANIFEST
        if media_type and declared and declared != media_type:
            raise InvalidDocument(what, f"mediaType {declared!r} differs from the expected {media_type!r}")
        if kind not in mt.MANIFEST_TYPES:
            raise InvalidDocument(what, f"unsupported manifest media type {kind!r}")
        if doc.get("schemaVersion") != 2:
            raise InvalidDocument(what, "schemaVersion must be 2")
        if "manifests" in doc:
            raise InvalidDocument(what, "has 'manifests': this is an index, not a manifest")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise InvalidDocument(what, "'layers' must be a list")
        subject = doc.get("subject")
        artifact_type = doc.get("artifactType")
        return cls(
            config=Descriptor.from_dict(doc.get("config"), f"{what} config"),
            layers=tuple(Descriptor.from_dict(d, f"{what} layer {i}") for i, d in enumerate(layers)),
            media_type=kind,
            annotations=_str_map(doc.get("annotations"), what),
            artifact_type=check_media_type(artifact_type, what) if artifact_type is not None else None,
            subject=Descriptor.from_dict(subject, f"{what} subject") if subject is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                               "config": self.config.to_dict(), "layers": [d.to_dict() for d in self.layers]}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


@valueclass
class Index:
    manifests: tuple[Descriptor, ...]
    media_type: str = mt.OCI_INDEX
    annotations: FrozenDict[str, str] = field(default=EMPTY)
    artifact_type: str | None = None
    subject: Descriptor | None = None

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None, what: str = "image index") -> Index:
        return cls.from_doc(parse_json(data, what), media_type, what)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], media_type: str | None = None, what: str = "image index") -> Index:
        declared = _media_type_of(doc, what)
        kind = declared or media_type or mt.OCI_INDEX
        if kind not in mt.INDEX_TYPES:
            raise InvalidDocument(what, f"unsupported index media type {kind!r}")
        if doc.get("schemaVersion") != 2:
            raise InvalidDocument(what, "schemaVersion must be 2")
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidDocument(what, "'manifests' must be a list")
        subject = doc.get("subject")
        artifact_type = doc.get("artifactType")
        return cls(
            manifests=tuple(Descriptor.from_dict(d, f"{what} entry {i}") for i, d in enumerate(manifests)),
            media_type=kind,
            annotations=_str_map(doc.get("annotations"), what),
            artifact_type=check_media_type(artifact_type, what) if artifact_type is not None else None,
            subject=Descriptor.from_dict(subject, f"{what} subject") if subject is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                               "manifests": [d.to_dict() for d in self.manifests]}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    def select(self, platform: Platform | None) -> Descriptor:
        """The one manifest for ``platform`` (or the only manifest when no platform is asked for)."""
        candidates = [d for d in self.manifests if d.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES]
        if platform is None:
            if len(candidates) == 1:
                return candidates[0]
            found = ", ".join(str(d.platform) for d in candidates if d.platform) or "none described"
            raise InvalidDocument("image index", f"holds {len(candidates)} manifests ({found}); pick a platform")
        for d in candidates:
            if d.platform is not None and d.platform.matches(platform):
                return d
        found = ", ".join(str(d.platform) for d in candidates if d.platform) or "none described"
        raise InvalidDocument("image index", f"no manifest for platform {platform} (it has: {found})")
