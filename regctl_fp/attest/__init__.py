"""Supply-chain attestations of images: SPDX SBOMs (``scan``, ``pkgdb``, ``sbom``), SLSA provenance
(``provenance``), DSSE envelopes (``dsse``) and the keys that sign them (``keys``).

No re-exports here: importing the scanner must not load cryptography.
"""
