"""``validate(image)``: the universal oracle. Streams every blob and checks digests, sizes, diff_ids."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

from . import mediatypes as mt
from .compression import decompressed
from .digest import Digest
from .errors import RegfpError, VerificationError
from .image import Image, Layer
from .manifest import Manifest
from .streams import ByteReader

CHUNK = 1 << 20


class ValidationError(VerificationError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("image is invalid:\n  " + "\n  ".join(problems))
        self.problems = problems


class _Counter(io.RawIOBase):
    """Counts and hashes the raw blob bytes on their way to the decompressor."""

    def __init__(self, raw: ByteReader, hash_: Any, on_bytes: Callable[[int], None] | None) -> None:
        self._raw = raw
        self.hash = hash_
        self.seen = 0
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._raw.read(len(buffer))
        n = len(chunk)
        buffer[:n] = chunk
        self.hash.update(chunk)
        self.seen += n
        if self._on_bytes is not None and n:
            self._on_bytes(n)
        return n


def _hash_stream(read: Callable[[int], bytes], algorithm: str) -> tuple[Digest, int]:
    h = hashlib.new(algorithm)
    n = 0
    while chunk := read(CHUNK):
        h.update(chunk)
        n += len(chunk)
    return Digest(algorithm, h.hexdigest()), n


def validate(image: Image, *, layers: bool = True, on_bytes: Callable[[int], None] | None = None) -> None:
    """Raise ``ValidationError`` listing every problem found; return quietly when all is well."""
    problems: list[str] = []
    try:
        parsed = Manifest.parse(image.manifest_bytes)
    except RegfpError as e:
        raise ValidationError([f"manifest: {e}"]) from None
    if parsed.config.digest != Digest.of(image.config_bytes, parsed.config.digest.algorithm):
        problems.append(f"config {parsed.config.digest}: digest does not match the config bytes")
    if parsed.config.size != len(image.config_bytes):
        problems.append(f"config {parsed.config.digest}: size {parsed.config.size} != {len(image.config_bytes)}")
    if tuple(la.descriptor for la in image.layers) != parsed.layers:
        problems.append("manifest layers differ from the image's layers")
    container = parsed.config.media_type in mt.IMAGE_CONFIG_TYPES
    if container:
        diff_ids = image.config.diff_ids
        if len(diff_ids) != len(image.layers):
            problems.append(f"config lists {len(diff_ids)} diff_ids for {len(image.layers)} layers")
        history = [h for h in image.config.history if not h.empty_layer]
        if image.config.history and len(history) != len(image.layers):
            problems.append(f"history has {len(history)} non-empty entries for {len(image.layers)} layers")
        if not image.config.os or not image.config.architecture:
            problems.append("config lacks 'os' or 'architecture'")
        for i, layer in enumerate(image.layers):
            if not mt.is_layer(layer.media_type):
                problems.append(f"layer {i} {layer.digest}: media type {layer.media_type} is not a layer type")
            elif i < len(diff_ids) and layer.diff_id is not None and layer.diff_id != diff_ids[i]:
                problems.append(f"layer {i} {layer.digest}: diff_id {layer.diff_id} != config {diff_ids[i]}")
    if layers:
        for i, layer in enumerate(image.layers):
            problems.extend(_check_layer(i, layer, image, container, on_bytes))
    if problems:
        raise ValidationError(problems)


def _check_layer(i: int, layer: Layer, image: Image, container: bool,
                 on_bytes: Callable[[int], None] | None) -> list[str]:
    where = f"layer {i} {layer.digest}"
    compression = mt.LAYER_COMPRESSION.get(layer.media_type)
    try:
        with layer.open() as raw:
            tee = _Counter(raw, hashlib.new(layer.digest.algorithm), on_bytes)
            if container and compression is not None:
                buffered = io.BufferedReader(tee, CHUNK)
                stream = decompressed(buffered, compression)
                diff_id, _ = _hash_stream(stream.read, "sha256")
                while tee.read(CHUNK):  # trailing bytes after the last member still count
                    pass
                expected = image.config.diff_ids[i] if i < len(image.config.diff_ids) else None
                if expected is not None and diff_id != expected:
                    return [f"{where}: uncompressed content hashes to {diff_id}, config says {expected}"]
            else:
                while tee.read(CHUNK):
                    pass
    except RegfpError as e:
        return [f"{where}: {e}"]
    except Exception as e:  # a stream that breaks while decompressing is a finding, not a crash
        return [f"{where}: cannot read or decompress ({type(e).__name__}: {e})"]
    blob_hash, seen = tee.hash, tee.seen
    actual = Digest(layer.digest.algorithm, blob_hash.hexdigest())
    out = []
    if seen != layer.size:
        out.append(f"{where}: size {seen} != descriptor {layer.size}")
    if actual != layer.digest:
        out.append(f"{where}: content hashes to {actual}")
    return out
