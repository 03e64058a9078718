"""The pure OCI model: digests, media types, descriptors, configs, manifests, indexes and images.

Nothing here touches the filesystem or the network; layers carry openers supplied by the stores.
"""

from .canonical import canonical_json
from .config import History, ImageConfig
from .descriptor import Descriptor, Platform
from .digest import Digest
from .errors import (
    DigestMismatch,
    InvalidDigest,
    InvalidDocument,
    InvalidInput,
    RegfpError,
    SizeMismatch,
    VerificationError,
)
from .frozen import FrozenDict, freeze, thaw
from .image import Image, Layer
from .manifest import Index, Manifest, sniff_media_type
from .validate import ValidationError, validate
from .verify import VerifyingReader, read_verified

__all__ = [
    "Descriptor", "Digest", "DigestMismatch", "FrozenDict", "History", "Image", "ImageConfig", "Index",
    "InvalidDigest", "InvalidDocument", "InvalidInput", "Layer", "Manifest", "Platform", "RegfpError",
    "SizeMismatch", "ValidationError", "VerificationError", "VerifyingReader", "canonical_json", "freeze",
    "read_verified", "sniff_media_type", "thaw", "validate",
]
