"""``regfp debug-image``: keys are read and checked here, and the per-user seed of the debug host keys is
kept here (randomness and files in the home directory stay at the edge)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import InputFileError, InvalidInput
from ..regularfile import read_regular
from . import output


def debug_image(recipe: Path, ssh_keys: list[Path], channel: str | None, release: str | None, delta: int | None,
                ttl: str | None, sshd_only: bool, port: int, out: Path | None, now_text: str | None,
                json_out: bool, platform_text: str | None = None) -> None:
    from ..engine.converge import converge
    from ..engine.debug import DebugRequest, DebugResult, debug_channel
    from ..engine.run import Run
    from ..recipe.load import load_recipe
    from ..stages.debug import check_public_key, fingerprint, known_hosts_line
    from ..stages.rollout import parse_release
    from ..timeutil import parse_duration
    from .edge import parse_platform
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
    platform = parse_platform(platform_text)
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
    request = DebugRequest(keys=tuple(keys), host_seed=host_key_seed(), channel=channel,
                           release=parse_release(release) if release else None, delta=delta, ttl=ttl,
                           sshd_only=sshd_only, port=port, platform=platform)
    layout = out.resolve() if out else lr.output_layout
    with progress_bar() as bar:
        # On the current commit: build, patch (its channel only) and the debug image in one run; on a
        # release of the ledger: the debug stage alone.
        run = Run(lr, layout, now, _options(), progress=bar, secrets=secrets(lr), git_cache=_git_cache(),
                  debug=request, channels=None if request.from_ledger else (debug_channel(lr, request),))
        converge(run, ("debug",), with_needs=not request.from_ledger)
    result: DebugResult = run.memo["debug"]
    doc = {"name": result.name, "digest": result.digest, "parent": result.parent, "platform": result.platform,
           "expires": result.expires,
            "hostKey": result.host_key, "hostKeyFingerprint": fingerprint(result.host_key), "port": result.port,
            "identity": result.identity, "knownHosts": known_hosts_line(result.host_key, result.port)}
    if json_out:
        output.print_json(doc)
        return
    for key in ("name", "digest", "parent", "platform", "expires", "port", "identity", "hostKeyFingerprint",
                "knownHosts"):
        if doc[key] is not None:
            output.line(f"{key:19} {doc[key]}")


SEED_SIZE = 32


def host_key_seed() -> bytes:
    """The per-user secret the debug host keys are derived from (``$XDG_CONFIG_HOME/regfp/debug-host-seed``,
    mode 0600), made on first use. Copy it to another machine to get the same host keys there."""
    from .edge import config_dir

    directory = config_dir()
    path = directory / "debug-host-seed"
    for _ in range(2):
        try:
            return _read_seed(path)
        except FileNotFoundError:
            pass
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = directory / f".debug-host-seed.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(SEED_SIZE))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # never replaces a seed another run made meanwhile
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    return _read_seed(path)


def _read_seed(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # other OSErrors exit 1, naming the file
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read(SEED_SIZE + 1) if stat.S_ISREG(st.st_mode) else b""
    if len(data) != SEED_SIZE or st.st_mode & 0o077:
        problem = "is readable by others" if st.st_mode & 0o077 and len(data) == SEED_SIZE else \
            f"is not a {SEED_SIZE}-byte regular file"
        raise InvalidInput(f"{path} {problem}; it holds the secret the debug host keys are derived from "
                           "(remove it to make a new one, which changes every debug host key)")
    return data
