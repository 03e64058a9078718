"""``regfp debug-image``: keys are read and checked here, the host key is made here (randomness at the edge)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputFileError, InvalidInput
from ..regularfile import read_regular
from . import output


def debug_image(recipe: Path, ssh_keys: list[Path], channel: str | None, release: str | None, delta: int | None,
                ttl: str | None, sshd_only: bool, port: int, out: Path | None, now_text: str | None,
                json_out: bool) -> None:
    from ..recipe.adhoc import make_debug_image
    from ..recipe.load import load_recipe
    from ..stages.debug import HostKey, check_public_key, fingerprint
    from ..stages.rollout import parse_release
    from ..timeutil import parse_duration
    from .progress import progress_bar
    from .recipe_cmds import _git_cache, _options, parse_now, secrets

    if not ssh_keys:
        raise InvalidInput("give at least one --ssh-key FILE.pub")
    if release is not None and delta is not None:
        raise InvalidInput("--release and --delta are alternatives; give one")
    if ttl is not None:
        try:
            parse_duration(ttl)
        except ValueError as e:
            raise InvalidInput(f"--ttl: {e}") from None
    if not 1 <= port <= 65535:
        raise InvalidInput(f"--port {port} is not a TCP port")
    keys = []
    for path in ssh_keys:
        try:
            data = read_regular(path, 16384, "public key")
        except InputFileError as e:
            raise InvalidInput(f"--ssh-key {e.message}") from None
        except OSError as e:
            raise InvalidInput(f"--ssh-key {path}: cannot read ({e.strerror})") from None
        keys.append(check_public_key(data.decode("utf-8", "replace"), str(path)))
    lr = load_recipe(recipe)
    now = parse_now(now_text)
    with progress_bar() as bar:
        result = make_debug_image(lr, keys=tuple(keys), host_key=HostKey(os.urandom(32)), now=now,
                                  options=_options(), secrets=secrets(lr), layout=out.resolve() if out else None,
                                  git_cache=_git_cache(), channel=channel,
                                  release=parse_release(release) if release else None, delta=delta, ttl=ttl,
                                  sshd_only=sshd_only, port=port, progress=bar)
    doc = {"name": result.name, "digest": result.digest, "parent": result.parent, "expires": result.expires,
            "hostKey": result.host_key, "hostKeyFingerprint": fingerprint(result.host_key), "port": result.port,
            "identity": result.identity}
    if json_out:
        output.print_json(doc)
        return
    for key in ("name", "digest", "parent", "expires", "port", "identity", "hostKeyFingerprint"):
        if doc[key] is not None:
            output.line(f"{key:19} {doc[key]}")
