"""Every annotation and label key regfp reads or writes, in one place.

OCI's standard keys where they exist (image-spec annotations.md), ``dev.regfp.*`` for the rest.
"""

from __future__ import annotations

# OCI image-spec pre-defined annotation keys.
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"
SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
VERSION = "org.opencontainers.image.version"
TITLE = "org.opencontainers.image.title"
DESCRIPTION = "org.opencontainers.image.description"
URL = "org.opencontainers.image.url"
AUTHORS = "org.opencontainers.image.authors"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"

# oras's keys for a file layer: a tar layer that is a directory, and the sha256 of that uncompressed tar.
ORAS_UNPACK = "io.deis.oras.content.unpack"
ORAS_CONTENT_DIGEST = "io.deis.oras.content.digest"

# regfp's own keys.
STAGE = "dev.regfp.stage"
KEY = "dev.regfp.key"
BUILT_AT = "dev.regfp.built-at"  # on layout index entries only: the time is not part of the image
REBUILD_AFTER = "dev.regfp.rebuild-after"
CHANNEL = "dev.regfp.channel"
FALLBACK = "dev.regfp.fallback"
RELEASE = "dev.regfp.release"
YANKED = "dev.regfp.yanked"
LAST_RELEASE = "dev.regfp.last-release"
ENVIRONMENT = "dev.regfp.environment"
LOCATION = "dev.regfp.location"
IDENTITY = "dev.regfp.identity"
IDENTITY_NOT_BEFORE = "dev.regfp.identity-not-before"
IDENTITY_NOT_AFTER = "dev.regfp.identity-not-after"
CONTAINS_SECRET = "dev.regfp.contains-secret"
DEBUG = "dev.regfp.debug"
PARENT = "dev.regfp.parent"
EXPIRES = "dev.regfp.expires"
WORK = "dev.regfp.work"
CHUNK = "dev.regfp.chunk"
AXIS_PREFIX = "dev.regfp.axis."
SOURCE_SUBDIR = "dev.regfp.source.subdir"
# On a layout's index.json entry of a referrer (an artifact with a subject, listed without a name): the
# subject's digest, so gc keeps it while that subject lives and listing referrers needs no manifest read.
SUBJECT = "dev.regfp.subject"
# On attestation artifacts (referrers): the in-toto predicate type of the statement, and the signing key's id.
PREDICATE_TYPE = "dev.regfp.predicate-type"
ATTEST_KEYID = "dev.regfp.attest-keyid"
