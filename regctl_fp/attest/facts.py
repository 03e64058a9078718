"""What an attestation says about where an image came from: its source commit and its input images.

Only facts that are the same on every machine go in: the recipe's source URL (never a local checkout
path), commit ids and digests, so two clones attest the same bytes.
"""

from __future__ import annotations

from typing import Literal

from ..oci.digest import Digest
from ..values import valueclass

InputKind = Literal["base", "channel", "polyfill", "tool", "image", "data"]


@valueclass
class SourceRef:
    """The application source: a Git commit, and where it can be fetched if the recipe says so
    (``source.url``); ``subdir`` the part of the tree the image was built from."""

    name: str
    commit: str
    url: str | None = None
    subdir: str = ""

    @property
    def git_uri(self) -> str | None:
        """``git+<url>`` (SPDX and SLSA's VCS form), or None without a URL."""
        if not self.url:
            return None
        return self.url if self.url.startswith("git+") else f"git+{self.url}"


@valueclass
class Input:
    """An input image of a stage: what it is for (``kind``), a name people know it by (the recipe's
    reference, e.g. ``stable`` or ``oci:tools:apm:1``), and its digest."""

    kind: InputKind
    name: str
    digest: Digest
    uri: str | None = None  # where it can be fetched, when that is the same everywhere (a registry ref)
