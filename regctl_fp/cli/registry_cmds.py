"""``inspect`` of a registry reference and ``login``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from ..oci import mediatypes as mt
from ..refs import RegistryRef, parse_registry
from . import output, registry_session
from .registry_session import client_options, session

if TYPE_CHECKING:
    from ..oci.descriptor import Platform

PASSWORD_LIMIT = 64 << 10  # what --password-stdin reads at most (tokens used as passwords can be long)


def inspect(ref: RegistryRef, text: str, want: Platform | None, json_out: bool) -> None:
    from ..oci.manifest import Index
    from ..stores.base import read_image
    from . import render

    with session() as s:
        store, desc = s.open(ref)
        if desc.media_type in mt.INDEX_TYPES and want is None:
            render.index(text, desc, Index.parse(store.get_manifest(desc), desc.media_type), json_out,
                         store.referrers(desc.digest))
            return
        image = read_image(store, desc, want)
        render.image(text, image, json_out, store.referrers(image.digest))


def login(server: str, username: str, password_stdin: bool, json_out: bool) -> None:
    """Check the credentials against the registry, then store them where docker would."""
    from ..stores.auth import Credential
    from ..stores.credentials import store_login
    from ..stores.transport import RegistryClient

    host = _login_host(server)
    if not username:
        raise InvalidInput("login needs a user name: -u USER")
    if not password_stdin:
        raise InvalidInput("pass the password on standard input with --password-stdin "
                           "(never on the command line, where other users can see it)")
    password = sys.stdin.read(PASSWORD_LIMIT + 1)  # bounded: stdin may be a pipe that never ends
    if len(password) > PASSWORD_LIMIT:
        raise InvalidInput(f"the password on standard input is longer than {PASSWORD_LIMIT} characters")
    password = password.removesuffix("\n").removesuffix("\r")
    if not password:
        raise InvalidInput("no password on standard input")
    credential = Credential(username=username, password=password, source="regfp login")
    with RegistryClient(host, credential, client_options(host, registry_session.current_flags())) as client:
        client.check_login()
    where = store_login(host, username, password, os.environ, Path.home())
    if json_out:
        output.print_json({"registry": host, "username": username, "stored": where})
    else:
        output.line(f"Login Succeeded: {username} at {host} (stored in {where})")


def _login_host(server: str) -> str:
    from ..refs import DOCKER_HUB
    from ..stores.credentials import HUB_ALIASES

    text = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    if not text:
        raise InvalidInput("login needs a registry host")
    if text in HUB_ALIASES:
        return DOCKER_HUB
    return parse_registry(f"{text}/x").registry if "." in text or ":" in text or text == "localhost" else text
