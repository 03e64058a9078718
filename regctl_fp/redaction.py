"""The secrets this process sends (passwords, the base64 user:password pair, bearer, identity and
registry tokens) and their removal from any text shown to people, whatever its source: a registry
that echoes the ``Authorization`` header in an error body, an HTTP library's message, a token server.

The record is process-wide on purpose: which secrets went out is a fact about the run, and the one
place that prints (the CLI) must be able to scrub them without every error carrying its client along.
"""

from __future__ import annotations

import json
import threading

MASK = "***"
# A bare value shorter than this is not scrubbed on its own (only inside its header form): a short
# string also occurs in ordinary text (digests, words), and masking it there would garble every
# message while protecting a secret that guessing finds anyway.
MIN_BARE = 6

_lock = threading.Lock()
_forms: tuple[str, ...] = ()  # longest first, so a secret inside a longer one never leaves a tail


def remember_secret(value: str, *, scheme: str | None = None) -> None:
    """Scrub ``value`` from now on, in the forms it travels or is echoed in: as it is, JSON-escaped,
    URL-encoded (a form body), as a Python bytes literal (an HTTP library's message), and as the
    header value ``<scheme> <value>`` when it goes in an ``Authorization`` header."""
    if not value:
        return
    from urllib.parse import quote, quote_plus  # only once there is a secret: start-up stays lean

    forms: set[str] = set()
    for v in {value, value.strip()}:
        if scheme:
            forms.add(f"{scheme} {v}")
        if len(v) >= MIN_BARE:
            forms.update({v, json.dumps(v)[1:-1], quote(v, safe=""), quote_plus(v),
                          repr(v.encode("utf-8", "surrogateescape"))[2:-1]})
    global _forms
    with _lock:
        _forms = tuple(sorted(set(_forms) | {f for f in forms if f}, key=lambda f: (-len(f), f)))


def scrub(text: str) -> str:
    """``text`` with every remembered secret replaced by ``***``."""
    forms = _forms
    if not forms or not text:
        return text
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text
