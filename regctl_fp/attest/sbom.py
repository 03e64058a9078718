"""SPDX 2.3 JSON SBOMs of images: the image, its config and layers, the packages found in the layers, the
lockfiles the recipe names, and the application source with its commit.

Deterministic: the one time in it is passed in (the image's ``created``), the document namespace comes
from the image digest, element ids from what they describe, and everything is sorted and written as
canonical JSON; so the same image gives the same SBOM bytes everywhere. Lockfiles appear with their
checksums; no other file of the image is listed, so a private key in an identity layer never is.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Collection, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from .. import __version__
from ..oci.canonical import canonical_json
from ..oci.digest import Digest
from ..oci.image import Image
from ..timeutil import parse_rfc3339, rfc3339
from .facts import SourceRef
from .pkgdb import Package
from .provenance import statement
from .scan import LIMITS, Inventory, ScanLimits, inventory, scan_layer

SPDX_PREDICATE = "https://spdx.dev/Document/v2.3"
NAMESPACE = "https://regfp.dev/spdx/"
NOASSERTION = "NOASSERTION"
_ID_CHARS = re.compile(r"[^A-Za-z0-9.-]+")
_URL = re.compile(r"(git\+)?(https?|ssh|git)://[^\s@]+")


class CopyRule(Protocol):
    @property
    def from_(self) -> str: ...
    @property
    def to(self) -> str: ...


def dependency_paths(copy: Sequence[CopyRule], dependencies: Sequence[str],
                     files: Collection[str] = ()) -> tuple[str, ...]:
    """Where the recipe's dependency paths (``build.dependencies``, relative to the source subdir) land
    in the image, by the copy rules that take them: the paths to give the scanner as lockfiles.

    ``files`` are the source tree's file paths (relative to the subdir, as the build's tree lists
    them): a rule whose source is a file and whose destination ends in ``/`` puts it inside that
    directory, as the build does; without them, a rule's source is taken for a file only when it is
    the dependency itself."""
    out = set()
    for dep in dependencies:
        d = posixpath.normpath(dep).lstrip("/")
        for rule in copy:
            src = posixpath.normpath(rule.from_).lstrip("/")
            src = "" if src == "." else src
            to = rule.to.strip("/")
            into = rule.to.endswith("/")
            if d == src:
                out.add(posixpath.join(to, posixpath.basename(d)) if into else to)
            elif not src or d.startswith(src + "/"):  # the rule copies a tree holding the dependency
                out.add(posixpath.join(to, d[len(src) + 1 if src else 0:]))
            elif src.startswith(d + "/"):  # the rule copies a part of a dependency directory
                out.add(posixpath.join(to, posixpath.basename(src)) if into and src in files else to)
    return tuple(sorted(p for p in out if p))


def image_created(image: Image) -> int | None:
    """The image config's ``created`` as epoch seconds (the SBOM's creation time), None if it has none
    or it does not parse."""
    text = image.config.created
    try:
        return parse_rfc3339(text) if text else None
    except ValueError:
        return None


def _id(kind: str, *parts: str) -> str:
    """An element id from what the element is: readable prefix, hash of every part for uniqueness."""
    label = _ID_CHARS.sub("-", parts[0])[:48].strip("-") or "x"
    return f"SPDXRef-{kind}-{label}-{hashlib.sha256(canonical_json(parts)).hexdigest()[:16]}"


def _purl(p: Package, os_id: str) -> str:
    v = quote(p.version, safe="")
    if p.ecosystem in ("deb", "apk"):
        distro = os_id or ("debian" if p.ecosystem == "deb" else "alpine")
        arch = f"?arch={quote(p.arch, safe='')}" if p.arch else ""
        return f"pkg:{p.ecosystem}/{quote(distro, safe='')}/{quote(p.name, safe='')}@{v}{arch}"
    if p.ecosystem == "pypi":
        return f"pkg:pypi/{quote(re.sub(r'[-_.]+', '-', p.name).lower(), safe='')}@{v}"
    if p.ecosystem == "npm":
        scope, _, name = p.name.rpartition("/")
        return f"pkg:npm/{quote(scope, safe='') + '/' if scope else ''}{quote(name, safe='')}@{v}"
    return f"pkg:{p.ecosystem}/{quote(p.name, safe='/')}@{v}"


def _checksum(algorithm: str, value: str) -> dict[str, str]:
    return {"algorithm": algorithm, "checksumValue": value}


def _package(spdx_id: str, name: str, version: str, **more: Any) -> dict[str, Any]:
    return {"SPDXID": spdx_id, "name": name, "versionInfo": version, "downloadLocation": NOASSERTION,
            "filesAnalyzed": False, **more}


def _source_package(src: SourceRef) -> dict[str, Any]:
    where = f"{src.git_uri}@{src.commit}" if src.git_uri and _URL.fullmatch(src.git_uri) else NOASSERTION
    refs = []
    if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", src.commit):
        alg = "sha1" if len(src.commit) == 40 else "sha256"
        refs.append({"referenceCategory": "PERSISTENT-ID", "referenceType": "gitoid",
                     "referenceLocator": f"gitoid:commit:{alg}:{src.commit}"})
    info = f"Git commit {src.commit}" + (f", directory {src.subdir}" if src.subdir else "")
    return _package("SPDXRef-Source", src.name, src.commit, downloadLocation=where, primaryPackagePurpose="SOURCE",
                    sourceInfo=info, externalRefs=refs)


def sbom_document(image: Image, found: Inventory, *, name: str, created: int,
                  source: SourceRef | None = None) -> dict[str, Any]:
    """The SPDX 2.3 document of ``image`` (known as ``name``, e.g. its layout name) from the inventory of
    its layers; ``created`` (epoch seconds) is its creation time, e.g. the image config's ``created``."""
    digest = image.digest
    image_id = "SPDXRef-Image"
    packages = [_package(image_id, name, digest.text, primaryPackagePurpose="CONTAINER",
                         checksums=[_checksum("SHA256", digest.hex)],
                         externalRefs=[{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                        "referenceLocator": _image_purl(name, digest)}])]
    rels = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image_id}]
    cfg = image.config_descriptor
    packages.append(_package("SPDXRef-Config", "image config", cfg.digest.text, primaryPackagePurpose="OTHER",
                             checksums=[_checksum("SHA256", cfg.digest.hex)], comment=f"media type {cfg.media_type}"))
    rels.append(_rel(image_id, "CONTAINS", "SPDXRef-Config"))
    layer_ids = []
    for i, layer in enumerate(image.layers):
        lid = f"SPDXRef-Layer-{i + 1}"
        layer_ids.append(lid)
        diff = f", diff_id {layer.diff_id.text}" if layer.diff_id is not None else ""
        packages.append(_package(lid, f"layer {i + 1} of {len(image.layers)}", layer.digest.text,
                                 primaryPackagePurpose="ARCHIVE", checksums=[_checksum("SHA256", layer.digest.hex)],
                                 comment=f"media type {layer.media_type}, {layer.size} bytes{diff}"))
        rels.append(_rel(image_id, "CONTAINS", lid))
    if source is not None:
        packages.append(_source_package(source))
        rels.append(_rel(image_id, "GENERATED_FROM", "SPDXRef-Source"))
    # Lockfile entries are the application's declared dependencies (they may be vendored or fetched at
    # run time), so the application depends on them; the lockfile itself is its dependency manifest.
    # (SPDX forbids files CONTAINED by a package whose files were not analyzed, as layers here are.)
    app_id = "SPDXRef-Source" if source is not None else image_id
    lockfiles = {path for path, _, _ in found.lockfiles}
    for f in found.packages:
        p = f.package
        pid = _id("Package", p.name, p.ecosystem, p.version, p.arch, f.where, str(f.layer))
        more: dict[str, Any] = {"comment": f"recorded in /{f.where}",
                                "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                                  "referenceLocator": _purl(p, found.os_id)}]}
        if p.source_name:
            more["sourceInfo"] = f"built from the source package {p.source_name}"
        packages.append(_package(pid, p.name, p.version, **more))
        rels.append(_rel(app_id, "DEPENDS_ON", pid) if f.where in lockfiles else
                    _rel(_layer(layer_ids, f.layer), "CONTAINS", pid))
    files = []
    for path, rec, at in found.lockfiles:
        fid = _id("File", path, rec.sha256, str(at))
        where = f"layer {at + 1} ({image.layers[at].digest.text})" if at < len(image.layers) else "the image"
        files.append({"SPDXID": fid, "fileName": f"./{path}", "fileTypes": ["TEXT"],
                      "checksums": [_checksum("SHA1", rec.sha1), _checksum("SHA256", rec.sha256)],
                      "comment": f"a dependency lockfile the recipe names, {rec.size} bytes, in {where}"})
        rels.append(_rel(fid, "DEPENDENCY_MANIFEST_OF", app_id))
    creation: dict[str, Any] = {"created": rfc3339(created), "creators": [f"Tool: regfp-{__version__}"]}
    if found.skipped:
        creation["comment"] = "Not read (scan limits): " + "; ".join(
            f"layer {i + 1} /{path} ({why})" for i, path, why in found.skipped)
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": name,
        "documentNamespace": f"{NAMESPACE}{digest.algorithm}/{digest.hex}", "creationInfo": creation,
        "packages": sorted(packages, key=lambda p: p["SPDXID"]),
        "relationships": sorted(rels, key=lambda r: (r["spdxElementId"], r["relationshipType"],
                                                     r["relatedSpdxElement"]))}
    if files:
        doc["files"] = sorted(files, key=lambda f: f["SPDXID"])
    return doc


def _layer(layer_ids: list[str], index: int) -> str:
    return layer_ids[index] if index < len(layer_ids) else "SPDXRef-Image"


def _rel(a: str, kind: str, b: str) -> dict[str, str]:
    return {"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}


def _image_purl(name: str, digest: Digest) -> str:
    repo = name.rpartition("@")[0] or name
    last = repo.rsplit("/", 1)[-1].split(":", 1)[0].lower() or "image"
    return f"pkg:oci/{quote(last, safe='')}@{quote(digest.text, safe='')}"


def sbom_json(image: Image, found: Inventory, *, name: str, created: int, source: SourceRef | None = None) -> bytes:
    """``sbom_document`` as canonical JSON bytes (a valid SPDX 2.3 JSON file)."""
    return canonical_json(sbom_document(image, found, name=name, created=created, source=source))


def image_sbom(image: Image, *, name: str, source: SourceRef | None = None, lockfiles: Sequence[str] = (),
               created: int | None = None, limits: ScanLimits = LIMITS) -> bytes:
    """The SPDX JSON of a stored image in one call: each layer read once (``scan_layer``), stacked, then
    ``sbom_json``. ``created`` defaults to the image config's ``created`` (else the epoch: never the clock)."""
    found = inventory([scan_layer(layer, lockfiles, limits) for layer in image.layers])
    when = created if created is not None else image_created(image)
    return sbom_json(image, found, name=name, created=when or 0, source=source)


def sbom_statement(subject_name: str, subject_digest: Digest, document: dict[str, Any]) -> bytes:
    """The SBOM as an in-toto Statement v1 (predicate type SPDX 2.3), canonical JSON: the DSSE payload."""
    return canonical_json(statement(subject_name, subject_digest, SPDX_PREDICATE, document))
