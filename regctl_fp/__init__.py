"""regfp: container images as immutable values, composed like functions into OCI layouts and registries."""

__version__ = "0.1.0"
