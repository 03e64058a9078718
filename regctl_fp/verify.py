"""Verification of stored content: every manifest, config and layer, digests, sizes and diff_ids, and
for each entry of an image index, that the platform it claims is the one its image's config declares;
with ``deep``, also every layer's tar read to its end (a tar cut short can still match its digests)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import CorruptLayer, InputFileError, RegfpError
from .oci import mediatypes as mt
from .oci.descriptor import Descriptor, Platform
from .oci.digest import Digest
from .oci.image import Image
from .oci.manifest import Index
from .oci.validate import ValidationError, validate
from .progress import SILENT, Progress
from .regularfile import open_regular
from .stores.base import ReadStore, Store, children, read_image
from .stores.layout import LayoutStore


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)  # what was verified, by name or digest
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_descriptor(store: ReadStore, desc: Descriptor, report: Report, label: str,
                      progress: Progress = SILENT, *, deep: bool = False) -> None:
    """Verify what ``desc`` points at (every platform of an index); findings go to ``report``."""
    try:
        if desc.media_type in mt.INDEX_TYPES:
            index = Index.parse(store.get_manifest(desc), desc.media_type)
            for child in index.manifests:
                verify_descriptor(store, child, report, f"{label} [{child.platform or child.digest.short}]",
                                  progress, deep=deep)
            return
        image = read_image(store, desc)
        wrong = (_platform_problem(desc.platform, image.config.platform)
                 if desc.platform is not None and image.is_container_image else None)
        on_bytes = progress.task(f"verify {label}", sum(la.size for la in image.layers))
        try:
            validate(image, on_bytes=on_bytes)
        except ValidationError as e:
            raise ValidationError([*([wrong] if wrong else []), *e.problems]) from None
        problems = [wrong] if wrong else []
        if deep:
            problems += _tar_problems(image, progress.task(f"read the tars of {label}", len(image.layers)))
        if problems:
            raise ValidationError(problems)
    except ValidationError as e:
        report.problems.extend(f"{label}: {p}" for p in e.problems)
    except RegfpError as e:
        report.problems.append(f"{label}: {e}")
    else:
        report.checked.append(label)


def _platform_problem(claimed: Platform, declared: Platform) -> str | None:
    """An index entry's platform must be its image's (os, architecture, variant as the image-spec compares
    them: arm64 is arm64/v8): a client picks the entry by it, then runs the image's binaries."""
    if claimed.matches(declared) and declared.matches(claimed):
        return None
    return f"the index entry's platform {claimed} is not its image's ({declared}, from the config)"


def _tar_problems(image: Image, on_layer: Callable[[int], None]) -> list[str]:
    """Every tar layer read to its end: an image's layers, and an artifact's directory layers."""
    from .layertar import check_tar
    from .unpack import unpacks

    problems = []
    for i, layer in enumerate(image.layers):
        is_tar = mt.is_layer(layer.media_type) if image.is_container_image else unpacks(layer)
        if is_tar and layer.media_type in mt.LAYER_COMPRESSION:
            try:
                check_tar(layer)
            except CorruptLayer as e:
                problems.append(f"layer {i} {layer.digest}: {e.reason}")
        on_layer(1)
    return problems


def verify_layout(store: LayoutStore, progress: Progress = SILENT, *, deep: bool = False) -> Report:
    """Every named image, then every other blob file against the digest its file name claims."""
    report = Report()
    blob_dirs = store.blob_dirs()  # first: a layout whose blobs live elsewhere is refused before any work
    entries = store.read_index().manifests
    for entry in entries:
        verify_descriptor(store, entry, report, entry.ref_name or entry.digest.text, progress, deep=deep)
    reached = _reachable(store, list(entries))
    for alg_dir in blob_dirs:
        for blob in sorted(alg_dir.iterdir()):
            try:
                digest = Digest(alg_dir.name, blob.name)
            except RegfpError:
                continue
            if digest in reached:
                continue
            h = hashlib.new(digest.algorithm)
            try:
                with open_regular(blob, follow=False) as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            except InputFileError as e:
                report.problems.append(f"unreferenced blob {digest}: {e.reason}")
                continue
            if h.hexdigest() != digest.hex:
                report.problems.append(f"unreferenced blob {digest}: content hashes to "
                                       f"{digest.algorithm}:{h.hexdigest()}")
    return report


def _reachable(store: Store, roots: list[Descriptor]) -> set[Digest]:
    """What the names reach, as far as it can be read: a damaged manifest (already reported) still
    counts as referenced, and only what it would have reached is unknown."""
    seen: set[Digest] = set()
    todo = list(roots)
    while todo:
        desc = todo.pop()
        if desc.digest in seen:
            continue
        seen.add(desc.digest)
        if desc.media_type in mt.INDEX_TYPES | mt.MANIFEST_TYPES and store.has_blob(desc.digest):
            try:
                todo.extend(children(store, desc))
            except RegfpError:
                pass
    return seen
