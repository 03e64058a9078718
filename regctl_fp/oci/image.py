"""The ``Image`` value: config + layers + manifest fields. Layers hold a way to open their bytes.

An image read from a store keeps the exact manifest and config bytes it was read with, so its digest
is the stored digest; any change (``with_*``) drops them and the manifest is re-encoded canonically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, replace
from functools import cached_property

from ..values import valueclass
from . import mediatypes as mt
from .config import History, ImageConfig
from .descriptor import Descriptor
from .digest import Digest
from .frozen import EMPTY, FrozenDict, frozen_str_map
from .manifest import Manifest
from .streams import ByteStream, Opener


def _no_opener() -> ByteStream:
    raise LookupError("this layer's content is not available here")


@valueclass
class Layer:
    """A blob of an image: its descriptor, its uncompressed digest (None for non-tar blobs) and an
    opener returning a stream of the stored (compressed) bytes that verifies itself as it is read."""

    descriptor: Descriptor
    diff_id: Digest | None
    opener: Opener = field(default=_no_opener, compare=False, repr=False)

    def open(self) -> ByteStream:
        return self.opener()

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def compression(self) -> mt.Compression | None:
        return mt.LAYER_COMPRESSION.get(self.media_type)


@valueclass
class Image:
    config: ImageConfig
    layers: tuple[Layer, ...] = ()
    annotations: FrozenDict[str, str] = field(default=EMPTY)
    media_type: str = mt.OCI_MANIFEST
    config_media_type: str = mt.OCI_CONFIG
    artifact_type: str | None = None
    subject: Descriptor | None = None
    config_annotations: FrozenDict[str, str] = field(default=EMPTY)
    raw_config: bytes | None = field(default=None, repr=False)
    raw_manifest: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_manifest(cls, manifest: Manifest, config_bytes: bytes, layers: tuple[Layer, ...],
                      manifest_bytes: bytes) -> Image:
        """An image as read from a store; ``layers`` must match ``manifest.layers`` one to one."""
        if manifest.config.media_type in mt.IMAGE_CONFIG_TYPES:
            from .manifest import parse_json

            config = ImageConfig.from_dict(parse_json(config_bytes, "image config"))
        else:
            config = ImageConfig(EMPTY)
        return cls(config=config, layers=layers, annotations=manifest.annotations,
                   media_type=manifest.media_type, config_media_type=manifest.config.media_type,
                   artifact_type=manifest.artifact_type, subject=manifest.subject,
                   config_annotations=manifest.config.annotations,
                   raw_config=config_bytes, raw_manifest=manifest_bytes)

    # -- derived values ---------------------------------------------------------------------------
    @cached_property
    def config_bytes(self) -> bytes:
        return self.raw_config if self.raw_config is not None else self.config.to_bytes()

    @cached_property
    def config_descriptor(self) -> Descriptor:
        return Descriptor(self.config_media_type, Digest.of(self.config_bytes), len(self.config_bytes),
                          annotations=self.config_annotations)

    @cached_property
    def manifest(self) -> Manifest:
        return Manifest(config=self.config_descriptor, layers=tuple(la.descriptor for la in self.layers),
                        media_type=self.media_type, annotations=self.annotations,
                        artifact_type=self.artifact_type, subject=self.subject)

    @cached_property
    def manifest_bytes(self) -> bytes:
        return self.raw_manifest if self.raw_manifest is not None else self.manifest.to_bytes()

    @cached_property
    def digest(self) -> Digest:
        return Digest.of(self.manifest_bytes)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.manifest_bytes),
                          artifact_type=self.artifact_type)

    @property
    def is_container_image(self) -> bool:
        return self.config_media_type in mt.IMAGE_CONFIG_TYPES

    # -- changes (each returns a new Image) --------------------------------------------------------
    def _changed(self, *, config: ImageConfig | None = None, layers: tuple[Layer, ...] | None = None,
                 annotations: FrozenDict[str, str] | None = None) -> Image:
        """The fields given replaced; the stored manifest bytes no longer apply, nor the stored config
        bytes when the config is replaced."""
        return replace(self, config=self.config if config is None else config,
                       layers=self.layers if layers is None else layers,
                       annotations=self.annotations if annotations is None else annotations,
                       raw_manifest=None, raw_config=self.raw_config if config is None else None)

    def with_config(self, config: ImageConfig) -> Image:
        return self._changed(config=config)

    def with_annotations(self, annotations: Mapping[str, str]) -> Image:
        """Annotations merged in (a value of ``""`` is kept; use ``without_annotations`` to drop)."""
        return self._changed(annotations=frozen_str_map({**self.annotations, **annotations}))

    def without_annotations(self, *keys: str) -> Image:
        return self._changed(annotations=frozen_str_map({k: v for k, v in self.annotations.items()
                                                         if k not in keys}))

    def with_layers(self, layers: tuple[Layer, ...], history: tuple[History, ...] | None = None) -> Image:
        """Layers replaced; for container images ``rootfs.diff_ids`` follows and, if given, history."""
        if not self.is_container_image:
            return self._changed(layers=layers)
        diff_ids = []
        for layer in layers:
            if layer.diff_id is None:
                raise ValueError(f"layer {layer.digest} has no diff_id; it cannot go into an image")
            diff_ids.append(layer.diff_id)
        hist = self.config.history if history is None else history
        return self._changed(layers=layers, config=self.config.with_layers(diff_ids, hist))

    def appended(self, layer: Layer, history: History) -> Image:
        return self.with_layers((*self.layers, layer), (*self.config.history, history))
