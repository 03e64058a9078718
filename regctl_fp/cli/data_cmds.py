"""``regfp data push`` and ``regfp data pull``: files, directories, Git trees and Helm charts as OCI
artifacts in a layout or a registry. Inputs are checked before any store is opened, so bad input
leaves nothing behind; the time a Helm chart records is decided here (``--created``,
``SOURCE_DATE_EPOCH``, else the archive's modification time, as ``helm push`` does)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput, RefError
from ..oci.image import Image
from ..refs import DirRef, LayoutRef, Ref, RegistryRef, check_tag, parse_ref
from ..values import valueclass
from . import edge, output
from .progress import progress_bar

if TYPE_CHECKING:
    from ..oci.descriptor import Descriptor, Platform
    from ..progress import Progress
    from ..stages.helm import Chart
    from ..stores.base import Store

Build = Callable[["Store", "Progress"], Image]


@valueclass
class PushOptions:
    artifact_type: str | None = None
    annotations: tuple[str, ...] = ()
    compression: str = "gzip"
    fmt: str = "auto"
    media_type: str | None = None
    git: str | None = None
    git_ref: str = "HEAD"
    subdir: str = ""
    url: str | None = None
    created: str | None = None


def parse_annotations(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--annotation {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def push(paths: list[str], to: str, opts: PushOptions, json_out: bool) -> None:
    from ..stages.helm import is_chart_archive

    text = to.removeprefix("oci://")  # how helm users write registry references
    dst = parse_ref(text)
    if isinstance(dst, DirRef):
        raise RefError(to, "a dir: reference cannot be a destination; use oci:PATH:NAME or HOST/REPO[:TAG]")
    if opts.fmt not in ("auto", "data", "helm"):
        raise InvalidInput(f"--format {opts.fmt!r}: one of auto, data, helm")
    annotations = parse_annotations(opts.annotations)
    build: Build
    if opts.git is not None:
        if paths:
            raise InvalidInput("give either paths or --git, not both")
        kind, build = "source", _source_build(opts, annotations)
    elif opts.fmt == "helm" or (opts.fmt == "auto" and len(paths) == 1 and is_chart_archive(Path(paths[0]))):
        if len(paths) != 1:
            raise InvalidInput("--format helm pushes exactly one chart archive (.tgz)")
        chart, prov = _chart(paths[0], opts)
        kind, build = "helm", _helm_build(chart, prov, _chart_created(chart.path, opts.created))
        dst = _chart_ref(dst, text, chart)
    else:
        kind, build = "data", _data_build(paths, opts, annotations)
    image, desc = _store(dst, text, build)
    _report_push(kind, _shown(dst), image, desc, json_out)


def _data_build(paths: list[str], opts: PushOptions, annotations: dict[str, str]) -> Build:
    from ..oci.compression import compression_named
    from ..stages import data

    inputs = data.plan_inputs(paths)
    options = data.DataOptions(artifact_type=opts.artifact_type or data.DATA_ARTIFACT_TYPE,
                               annotations=annotations, compression=compression_named(opts.compression),
                               file_media_type=opts.media_type or data.FILE_MEDIA_TYPE,
                               epoch=edge.source_date_epoch()).checked()

    def build(store: Store, bar: Progress) -> Image:
        return data.data_artifact(inputs, store, options, bar)

    return build


def _source_build(opts: PushOptions, annotations: dict[str, str]) -> Build:
    from ..gitsource import Repository, is_url
    from ..oci.compression import compression_named
    from ..stages import data

    assert opts.git is not None
    compression = compression_named(opts.compression)  # before anything is opened or written
    stack = ExitStack()
    cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="regfp-git-"))) if is_url(opts.git) else None
    try:
        repo = Repository.open(opts.git, base=Path.cwd(), cache=cache)
        commit = repo.resolve(opts.git_ref)
    except BaseException:
        stack.close()
        raise
    spec = data.SourceSpec(repo=repo, commit=commit, subdir=opts.subdir,
                           url=opts.url or (opts.git if is_url(opts.git) else None),
                           artifact_type=opts.artifact_type or data.SOURCE_ARTIFACT_TYPE,
                           compression=compression, annotations=annotations)
    repo.tree(commit.sha, opts.subdir)  # a missing subdir fails now, before a store is created

    def build(store: Store, bar: Progress) -> Image:
        with stack:
            return data.source_artifact(spec, store, bar)

    return build


def _chart(path_text: str, opts: PushOptions) -> tuple[Chart, Path | None]:
    from ..stages.helm import read_chart

    if opts.artifact_type or opts.annotations or opts.media_type:
        raise InvalidInput("a Helm chart is pushed exactly as helm does: --artifact-type, --annotation and "
                           "--media-type do not apply (the chart's Chart.yaml sets its annotations)")
    path = Path(path_text)
    if not path.is_file():
        raise InvalidInput(f"{path}: not a chart archive file")
    prov = path.with_name(path.name + ".prov")
    return read_chart(path), prov if prov.is_file() else None


def _chart_created(path: Path, text: str | None) -> str:
    from ..timeutil import parse_rfc3339, rfc3339

    if text is not None:
        try:
            return rfc3339(parse_rfc3339(text))
        except ValueError as e:
            raise InvalidInput(f"--created: {e}") from None
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return rfc3339(edge.source_date_epoch())
    return rfc3339(int(path.stat().st_mtime))  # what helm push records: the archive's modification time


def _chart_ref(dst: Ref, text: str, chart: Chart) -> Ref:
    """Where the chart goes: the tag is the chart's version (``+`` as ``_``); a registry repository that
    does not end with the chart's name gets it appended, as ``helm push oci://HOST/NAMESPACE`` does."""
    tag = chart.tag
    check_tag(tag)
    if isinstance(dst, RegistryRef):
        last = text.rpartition("/")[2].partition("@")[0]
        explicit = dst.tag if ":" in last else None
        if explicit is not None and explicit != tag:
            raise RefError(text, f"the tag of a Helm chart is its version: {tag}, not {explicit}")
        repo = dst.repository
        if repo.rpartition("/")[2] != chart.name:
            repo = f"{repo}/{chart.name}"
        return RegistryRef(dst.registry, repo, tag)
    assert isinstance(dst, LayoutRef)
    if dst.digest is not None:
        raise RefError(text, "the destination needs a name, not a digest")
    name = dst.name or chart.name
    if ":" in name.rpartition("/")[2]:
        name, _, given = name.rpartition(":")
        if given != tag:
            raise RefError(text, f"the tag of a Helm chart is its version: {tag}, not {given}")
    return LayoutRef(dst.path, name=f"{name}:{tag}")


def _helm_build(chart: Chart, prov: Path | None, created: str) -> Build:
    from ..stages.helm import helm_artifact

    def build(store: Store, bar: Progress) -> Image:
        return helm_artifact(chart, store, created, prov, bar)

    return build


def _store(dst: Ref, text: str, build: Build) -> tuple[Image, Descriptor]:
    from ..stores.base import write_image
    from ..stores.layout import LayoutStore

    if isinstance(dst, LayoutRef):
        if dst.name is None:
            raise RefError(text, "the destination needs a name: oci:PATH:NAME")
        with LayoutStore.open_or_create(dst.path) as layout, progress_bar() as bar:
            image = build(layout, bar)
            desc = write_image(layout, image)
            layout.set_names({dst.name: desc})
        return image, desc
    assert isinstance(dst, RegistryRef)
    if dst.digest is not None:
        raise RefError(text, "push to a tag (HOST/REPO:TAG); the digest is only known once the artifact is made")
    from ..stores.registry import RegistryStore
    from . import registry_session

    with registry_session.session() as s, progress_bar() as bar:
        target = s.store(dst)
        image = build(target, bar)
        desc = write_image(target, image)
        target.set_names({RegistryStore.name_of(dst): desc})
    return image, desc


def _shown(dst: Ref) -> str:
    return str(dst)


def _report_push(kind: str, where: str, image: Image, desc: Descriptor, json_out: bool) -> None:
    from ..stages.data import TITLE

    layers = [{"digest": la.digest.text, "size": la.size, "mediaType": la.media_type,
               "title": la.descriptor.annotations.get(TITLE)} for la in image.layers]
    if json_out:
        output.print_json({"reference": where, "kind": kind, "digest": desc.digest.text,
                           "mediaType": desc.media_type, "size": desc.size, "artifactType": image.artifact_type,
                           "configMediaType": image.config_media_type, "annotations": dict(image.annotations),
                           "layers": layers})
        return
    output.line(f"{where} {desc.digest}")


# -- pull -----------------------------------------------------------------------------------------------
def pull(ref_text: str, dest: str, overwrite: bool, platform: str | None, json_out: bool) -> None:
    from .. import unpack
    from ..stages import helm

    want = edge.parse_platform(platform)
    with _image(ref_text, want) as image, progress_bar() as bar:
        names: dict[int, str] | None = None
        if image.config_media_type == helm.CONFIG_MEDIA_TYPE:
            name, version = helm.chart_from_config(image)
            chart_index, prov_index = helm.chart_layers(image)
            names = {chart_index: f"{name}-{version}.tgz"}
            if prov_index is not None:
                names[prov_index] = f"{name}-{version}.tgz.prov"
            unpack.check_title(names[chart_index], "chart file name")
        elif image.is_container_image:
            raise InvalidInput(f"{ref_text} is a container image, not a data artifact: copy it "
                               "(regfp copy) or unpack it with umoci")
        pulled = unpack.pull(image, Path(dest), overwrite=overwrite, names=names, progress=bar)
    if json_out:
        output.print_json({"reference": ref_text, "digest": image.digest.text, "destination": dest,
                           "artifactType": image.artifact_type,
                           "files": [{"path": p.path, "kind": p.kind, "digest": p.digest.text, "size": p.size}
                                     for p in pulled]})
        return
    for p in pulled:
        output.line(f"{p.kind:9}  {p.path}  {p.digest}")


@contextmanager
def _image(text: str, want: Platform | None) -> Iterator[Image]:
    """The image a reference names, its registry session open while the caller reads its layers."""
    from ..sources import open_layout_ref
    from ..stores.base import read_image
    from .commands import _ref

    ref = _ref(text.removeprefix("oci://") if text.startswith("oci://") else text)
    if isinstance(ref, LayoutRef):
        store, desc = open_layout_ref(ref)
        yield read_image(store, desc, want)
        return
    if isinstance(ref, RegistryRef):
        from . import registry_session

        with registry_session.session() as s:
            store_r, desc = s.open(ref)
            yield read_image(store_r, desc, want)
        return
    raise RefError(text, "pull reads an artifact from oci:PATH:NAME or HOST/REPO[:TAG|@DIGEST]")
