"""The rollout stage: a monotonically increasing release stream kept in the store itself.

The ledger is an OCI index named ``rollouts/<name>:ledger``; its entries are the released images in
release order, each annotated with its number, time, revision, channel and base. ``r<N>`` names are
immutable; ``n-<k>`` names point at the k-th newest release that is not yanked. Everything here is a
pure function of the ledger and its inputs; the caller stores the results and moves names (last).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace

from ..errors import InvalidDocument, InvalidInput
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.frozen import frozen_str_map
from ..oci.manifest import Index
from ..values import valueclass

A_RELEASE = "dev.regfp.release"
A_YANKED = "dev.regfp.yanked"
A_LAST = "dev.regfp.last-release"
A_STAGE = "dev.regfp.stage"
A_CREATED = "org.opencontainers.image.created"
A_REVISION = "org.opencontainers.image.revision"
A_CHANNEL = "dev.regfp.channel"
A_BASE_DIGEST = "org.opencontainers.image.base.digest"
_RELEASE_NAME = re.compile(r"r([1-9][0-9]*)")


@valueclass
class Release:
    number: int
    image: Descriptor  # the released image (annotations stripped)
    created: str
    revision: str
    channel: str
    base_digest: str  # "" for an image index
    yanked: bool = False

    def entry(self) -> Descriptor:
        ann = {A_RELEASE: str(self.number), A_CREATED: self.created, A_REVISION: self.revision,
               A_CHANNEL: self.channel}
        if self.base_digest:  # a multi-platform release has none: each of its images names its own base
            ann[A_BASE_DIGEST] = self.base_digest
        if self.yanked:
            ann[A_YANKED] = "true"
        return Descriptor(self.image.media_type, self.image.digest, self.image.size, annotations=frozen_str_map(ann),
                          platform=self.image.platform)


@valueclass
class Ledger:
    name: str
    releases: tuple[Release, ...] = ()
    last: int = 0  # the highest number ever cut: never reused, whatever happens to the entries

    @classmethod
    def parse(cls, name: str, data: bytes) -> Ledger:
        index = Index.parse(data, mt.OCI_INDEX, what=f"ledger of {name}")
        releases = []
        for i, e in enumerate(index.manifests):
            a = e.annotations
            try:
                number = int(a[A_RELEASE])
            except (KeyError, ValueError):
                raise InvalidDocument(f"ledger of {name}", f"entry {i} has no valid {A_RELEASE}") from None
            releases.append(Release(number, Descriptor(e.media_type, e.digest, e.size, platform=e.platform),
                                    a.get(A_CREATED, ""), a.get(A_REVISION, ""), a.get(A_CHANNEL, ""),
                                    a.get(A_BASE_DIGEST, ""), a.get(A_YANKED) == "true"))
        numbers = [r.number for r in releases]
        if numbers != sorted(set(numbers)):
            raise InvalidDocument(f"ledger of {name}", "release numbers are not strictly increasing")
        last = max([int(index.annotations.get(A_LAST, "0") or 0), *numbers, 0])
        return cls(name, tuple(releases), last)

    def to_index(self) -> Index:
        return Index(manifests=tuple(r.entry() for r in self.releases),
                     annotations=frozen_str_map({A_STAGE: "rollout", A_LAST: str(self.last)}))

    @property
    def latest(self) -> Release | None:
        return self.releases[-1] if self.releases else None

    def live(self) -> list[Release]:
        """Releases that are not yanked, newest first: ``n-0`` is ``live()[0]``."""
        return [r for r in reversed(self.releases) if not r.yanked]

    def at_delta(self, delta: int) -> Release | None:
        live = self.live()
        return live[delta] if 0 <= delta < len(live) else None

    def get(self, number: int) -> Release:
        for r in self.releases:
            if r.number == number:
                return r
        raise InvalidInput(f"{self.name} has no release r{number} (releases: "
                           f"{', '.join(f'r{r.number}' for r in self.releases) or 'none'})")

    def cut(self, image: Descriptor, *, created: str, revision: str, channel: str, base_digest: str) -> Ledger:
        """A new release of ``image``, unless it is already the newest release (then the ledger as is)."""
        latest = self.latest
        if latest is not None and latest.image.digest == image.digest:
            return self
        number = self.last + 1
        release = Release(number, Descriptor(image.media_type, image.digest, image.size), created, revision,
                          channel, base_digest)
        return replace(self, releases=(*self.releases, release), last=number)

    def set_yanked(self, number: int, yanked: bool) -> Ledger:
        self.get(number)
        return replace(self, releases=tuple(replace(r, yanked=yanked) if r.number == number else r
                                            for r in self.releases))


def parse_release(text: str) -> int:
    m = _RELEASE_NAME.fullmatch(text)
    if not m:
        raise InvalidInput(f"{text!r} is not a release name (r1, r2, ...)")
    return int(m.group(1))


def names(ledger: Ledger, keep: int, cohorts: Cohorts | None) -> dict[str, Descriptor | None]:
    """Every name the rollout owns and what it points at now (None: the name must go)."""
    prefix = f"rollouts/{ledger.name}"
    out: dict[str, Descriptor | None] = {}
    for r in ledger.releases:
        out[f"{prefix}:r{r.number}"] = r.image
    live = ledger.live()
    for k in range(keep):
        out[f"{prefix}:n-{k}"] = live[k].image if k < len(live) else None
    if cohorts is not None:
        for bucket in range(cohorts.buckets):
            pick = ledger.at_delta(cohorts.delta_of(bucket))
            out[f"{prefix}:cohort-{bucket}"] = pick.image if pick else (live[0].image if live else None)
    return out


@valueclass
class Cohorts:
    """Static A/B tags: buckets below the canary share follow n-0, the others n-1."""

    buckets: int
    canary_percent: int

    @property
    def canary_buckets(self) -> int:
        return self.buckets * self.canary_percent // 100

    def delta_of(self, bucket: int) -> int:
        return 0 if bucket < self.canary_buckets else 1


def cohort_of(name: str, client_id: str, buckets: int) -> int:
    """The bucket a client pulls: the first 8 bytes of sha256("<name>:<client id>") as a big-endian
    integer, modulo the number of buckets. Any platform can compute it."""
    digest = hashlib.sha256(f"{name}:{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def ledger_name(name: str) -> str:
    return f"rollouts/{name}:ledger"


def current_names(existing: Mapping[str, Descriptor], ledger: Ledger) -> set[str]:
    """The rollout names present in a store (to find stale ``n-*``/``cohort-*`` names)."""
    prefix = f"rollouts/{ledger.name}:"
    return {n for n in existing if n.startswith(prefix) and n != ledger_name(ledger.name)}
