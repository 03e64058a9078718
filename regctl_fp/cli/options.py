"""How ``dir:`` and registry references become images for the running command: the machine's facts
(``edge``) and the command's registry session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .edge import cache_dir, host_platform, source_date_epoch

if TYPE_CHECKING:
    from ..oci.descriptor import Platform
    from ..sources import BuildOptions


def build_options(platform: Platform | None = None) -> BuildOptions:
    """This machine's platform, SOURCE_DATE_EPOCH, the dir: and work-item caches (dated by the real clock, read here at
    the edge) and registry references opened with the command's flags."""
    import functools
    import time

    from ..dircache import DirCache
    from ..filedigests import FileDigests
    from ..sources import BuildOptions
    from .registry_session import open_for_sources

    return BuildOptions(epoch=source_date_epoch(), platform=platform or host_platform(),
                        cache=DirCache(cache_dir() / "dir-images.json", clock=time.time_ns), registry=open_for_sources,
                        file_digests=functools.partial(FileDigests, cache_dir() / "file-digests", clock=time.time_ns))
