"""The CLI contract, through the real ``regfp`` in a subprocess: exit codes, stdout/stderr separation,
one JSON document with ``--json``, no tracebacks, progress only on a terminal, shell completion."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import regfp, regfp_json

from regctl_fp import __version__
from regctl_fp.layers import file_entry, write_layer
from regctl_fp.oci import mediatypes as mt
from regctl_fp.oci.config import History, ImageConfig
from regctl_fp.oci.descriptor import Descriptor, Platform
from regctl_fp.oci.image import Image, Layer
from regctl_fp.oci.manifest import Index
from regctl_fp.stores.base import write_image
from regctl_fp.stores.layout import LayoutStore

NAME = "app/hello:1"


def make_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello.conf").write_text("greeting = hi\n")
    (root / "bin").mkdir()
    (root / "bin" / "hello").write_bytes(b"#!/bin/sh\necho hello\n" * 200)
    os.chmod(root / "bin" / "hello", 0o755)
    return root


def make_index(layout: Path) -> dict[str, str]:
    """Two single-layer images, amd64 and arm64, under one index named ``multi:1``; digests by platform."""
    digests: dict[str, str] = {}
    with LayoutStore.open_or_create(layout) as store:
        entries = []
        for arch in ("amd64", "arm64"):
            written = write_layer([file_entry("arch.txt", arch.encode())], store.blob_sink(), mtime=0)
            desc = written.descriptor
            image = Image(config=ImageConfig.new(architecture=arch)).appended(
                Layer(desc, written.diff_id, lambda desc=desc: store.open_blob(desc)), History(created_by=arch))
            stored = write_image(store, image)
            digests[f"linux/{arch}"] = stored.digest.text
            entries.append(Descriptor(stored.media_type, stored.digest, stored.size,
                                      platform=Platform("linux", arch)))
        index = store.put_manifest(Index(manifests=tuple(entries)).to_bytes(), mt.OCI_INDEX)
        store.set_names({"multi:1": index})
        digests["index"] = index.digest.text
    return digests


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str | dict[str, str]]:
    """A source tree, a layout holding it as ``app/hello:1`` and a two-platform index (made once)."""
    root = tmp_path_factory.mktemp("cli")
    src = make_tree(root / "src")
    out = root / "out"
    digest = regfp_json("copy", f"dir:{src}", f"oci:{out}:{NAME}")["digest"]  # type: ignore[index]
    return {"root": root, "src": src, "out": out, "digest": digest, "index": make_index(root / "multi")}


def clean_run(*args: str, code: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = regfp(*args, check=False, env=env)
    assert proc.returncode == code, f"regfp {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "internal error" not in proc.stderr
    return proc


# ---- basics ------------------------------------------------------------------------------------------

def test_version() -> None:
    proc = clean_run("--version", code=0)
    assert proc.stdout == f"regfp {__version__}\n"
    assert proc.stderr == ""


def test_help_lists_every_command() -> None:
    proc = clean_run("--help", code=0)
    for command in ("inspect", "verify", "copy", "gc"):
        assert command in proc.stdout
    assert "--install-completion" in proc.stdout and "--show-completion" in proc.stdout


def test_a_run_builds_only_the_command_it_names_and_the_rest_stays_whole(
        capsys: pytest.CaptureFixture[str]) -> None:
    from regctl_fp.cli import main
    from regctl_fp.cli.app import app

    before = (list(app.registered_commands), list(app.registered_groups))
    for args in (["schema"], ["data", "--help"], ["copi", "a", "b"]):
        with pytest.raises(SystemExit):
            main(args)
        assert (app.registered_commands, app.registered_groups) == before
    out, err = capsys.readouterr()
    assert '"$schema"' in out and "Usage: regfp data [OPTIONS] COMMAND" in out
    assert "no such command 'copi'; did you mean 'copy'?" in err  # a typo still sees every command
    help_named = clean_run("copy", "--help", code=0).stdout
    help_first = clean_run("--help", code=0).stdout
    assert help_named.startswith("Usage: regfp copy [OPTIONS] SRC DST") and "debug-image" in help_first


def test_no_arguments_shows_help_as_bad_usage() -> None:
    proc = clean_run(code=2)
    assert "Commands" in proc.stderr and proc.stdout == ""


# ---- --json: one document on stdout, nothing else -------------------------------------------------------

JSON_COMMANDS = [
    ("inspect", ["inspect", "oci:{out}:app/hello:1"], "digest"),
    ("inspect-dir", ["inspect", "dir:{src}"], "digest"),
    ("inspect-index", ["inspect", "oci:{multi}:multi:1"], "manifests"),
    ("verify", ["verify", "oci:{out}:app/hello:1"], "ok"),
    ("verify-layout", ["verify", "{out}"], "ok"),
    ("copy", ["copy", "oci:{out}:app/hello:1", "oci:{root}/json-copy:x"], "digest"),
    ("gc", ["gc", "--dry-run", "{out}"], "removed"),
]


@pytest.mark.parametrize(("args", "key"), [(a, k) for _, a, k in JSON_COMMANDS], ids=[i for i, _, _ in JSON_COMMANDS])
def test_json_is_one_document_and_nothing_else(world: dict, args: list[str], key: str) -> None:
    filled = [a.format(out=world["out"], src=world["src"], root=world["root"], multi=world["root"] / "multi")
              for a in args]
    proc = clean_run(*filled, "--json", code=0)
    doc = json.loads(proc.stdout)  # raises on a second document or any stray text
    assert isinstance(doc, dict) and key in doc
    assert proc.stderr == ""  # not a terminal: no progress, no notes


def test_json_digests_agree_across_commands(world: dict) -> None:
    shown = regfp_json("inspect", f"oci:{world['out']}:{NAME}")
    assert shown["digest"] == world["digest"]  # type: ignore[index]
    again = regfp_json("copy", f"dir:{world['src']}", f"oci:{world['root']}/again:{NAME}")
    assert again["digest"] == world["digest"]  # type: ignore[index]  # same tree, same digest


# ---- exit codes and messages ---------------------------------------------------------------------------

# (id, args, exit code, text the error message must contain); {tmp} is a fresh directory per case.
FAILURES = [
    ("unknown-option", ["--bogus"], 2, "no such option: --bogus"),
    ("unknown-command-option", ["inspect", "--bogus", "oci:{out}:app/hello:1"], 2, "no such option"),
    ("missing-argument", ["inspect"], 2, "missing argument"),
    ("empty-oci", ["inspect", "oci:"], 2, "needs a layout path"),
    ("empty-dir", ["inspect", "dir:"], 2, "needs a directory path"),
    ("bad-digest", ["inspect", "oci:{out}@sha256:abc"], 2, "bad reference"),
    ("bad-name", ["copy", "dir:{src}", "oci:{tmp}/new:Bad Name"], 2, "not a valid OCI layout name"),
    ("no-dest-name", ["copy", "dir:{src}", "oci:{tmp}/new"], 2, "needs a name"),
    ("bad-platform", ["inspect", "--platform", "linux", "oci:{out}:app/hello:1"], 2, "os/arch"),
    ("verify-dir", ["verify", "dir:{src}"], 2, "computed from a directory"),
    ("gc-one-image", ["gc", "oci:{out}:app/hello:1"], 2, "whole layout"),
    ("unsupported-transport", ["inspect", "docker-archive:x.tar"], 2, "not supported"),
    ("missing-layout", ["inspect", "oci:{tmp}/missing:x"], 1, "no such directory"),
    ("missing-layout-path", ["verify", "{tmp}/missing"], 1, "no such directory"),
    ("missing-name", ["inspect", "oci:{out}:no/such:name"], 1, "not found"),
    ("missing-source", ["copy", "dir:{tmp}/missing", "oci:{tmp}/new:x"], 1, "not found"),
    ("not-a-layout", ["gc", "{src}"], 1, "not an OCI image layout"),
    ("no-platform-match", ["inspect", "--platform", "linux/s390x", "oci:{multi}:multi:1"], 1, "linux/s390x"),
    ("no-platform-in-index", ["copy", "--platform", "linux/riscv64", "oci:{multi}:multi:1", "oci:{tmp}/new:x"],
     1, "no manifest for platform"),
]


def fill(args: list[str], world: dict, tmp: Path) -> list[str]:
    return [a.format(out=world["out"], src=world["src"], tmp=tmp, multi=world["root"] / "multi") for a in args]


@pytest.mark.parametrize(("args", "code", "message"), [(a, c, m) for _, a, c, m in FAILURES],
                         ids=[i for i, *_ in FAILURES])
def test_failures_exit_with_the_right_code_and_a_clear_message(world: dict, tmp_path: Path, args: list[str],
                                                                code: int, message: str) -> None:
    proc = clean_run(*fill(args, world, tmp_path), code=code)
    assert message in proc.stderr
    assert proc.stderr.count("error:") == 1
    assert proc.stdout == ""
    assert not (tmp_path / "new").exists()  # nothing half-written


@pytest.mark.parametrize(("case", "args", "code"), [(i, a, c) for i, a, c, _ in FAILURES],
                         ids=[i for i, *_ in FAILURES])
def test_failures_with_json_print_one_error_document(world: dict, tmp_path: Path, case: str, args: list[str],
                                                     code: int) -> None:
    proc = clean_run(*fill(args, world, tmp_path), "--json", code=code)
    error = json.loads(proc.stdout)["error"]  # one document, even for a failure
    assert error["exitCode"] == code and error["message"]
    assert (error["type"] == "UsageError") == (case in ("unknown-option", "unknown-command-option",
                                                        "missing-argument"))
    assert proc.stderr.count("error:") == 1  # the human message is still on stderr


def test_verify_failure_names_the_bad_blob(world: dict, tmp_path: Path) -> None:
    layout = tmp_path / "corrupt"
    regfp("copy", f"oci:{world['out']}:{NAME}", f"oci:{layout}:{NAME}")
    layer = regfp_json("inspect", f"oci:{layout}:{NAME}")["layers"][0]["digest"]  # type: ignore[index]
    blob = layout / "blobs" / "sha256" / layer.split(":", 1)[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    # A new file in its place: the copy hard-linked the blob, so writing into it would damage the
    # shared fixture's layout too (README: never edit a layout's blobs in place).
    damaged = blob.with_name("damaged")
    damaged.write_bytes(bytes(data))
    damaged.replace(blob)
    proc = clean_run("verify", f"oci:{layout}:{NAME}", code=1)
    assert layer in proc.stderr and "digest mismatch" in proc.stderr
    proc = clean_run("verify", str(layout), "--json", code=1)
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["verified"] == []
    assert any(layer in p for p in doc["problems"])


def test_inspect_text_shows_digests_layers_and_sizes(world: dict) -> None:
    shown = regfp_json("inspect", f"oci:{world['out']}:{NAME}")
    proc = clean_run("inspect", f"oci:{world['out']}:{NAME}", code=0)
    text = proc.stdout
    assert proc.stderr == ""
    assert shown["digest"] in text and shown["config"]["digest"] in text  # type: ignore[index]
    layer = shown["layers"][0]  # type: ignore[index]
    assert layer["digest"] in text and layer["diffID"] in text  # full digests, not cut or wrapped
    assert "1 layer," in text and "tar+gzip" in text
    size_line = next(line for line in text.splitlines() if layer["digest"] in line)
    assert f"{layer['size']} B" in size_line
    assert "linux/" in text and "PATH=" in text


def test_inspect_of_an_index_lists_platforms_and_picks_one(world: dict) -> None:
    digests = world["index"]
    ref = f"oci:{world['root'] / 'multi'}:multi:1"
    text = clean_run("inspect", ref, code=0).stdout
    assert digests["index"] in text
    for platform in ("linux/amd64", "linux/arm64"):
        row = next(line for line in text.splitlines() if digests[platform] in line)
        assert platform in row
    doc = regfp_json("inspect", ref)
    assert doc["digest"] == digests["index"]  # type: ignore[index]
    assert [(m["platform"]["architecture"], m["digest"]) for m in doc["manifests"]] == [  # type: ignore[index]
        ("amd64", digests["linux/amd64"]), ("arm64", digests["linux/arm64"])]
    for platform in ("linux/amd64", "linux/arm64"):
        picked = regfp_json("inspect", "--platform", platform, ref)
        assert picked["digest"] == digests[platform]  # type: ignore[index]
        assert picked["config"]["content"]["architecture"] == platform.split("/")[1]  # type: ignore[index]


def test_copy_with_platform_takes_one_image_from_an_index(world: dict, tmp_path: Path) -> None:
    digests = world["index"]
    copied = regfp_json("copy", "--platform", "linux/arm64", f"oci:{world['root'] / 'multi'}:multi:1",
                        f"oci:{tmp_path / 'one'}:arm")
    assert copied["digest"] == digests["linux/arm64"]  # type: ignore[index]
    assert regfp_json("verify", str(tmp_path / "one"))["verified"] == ["arm"]  # type: ignore[index]


def test_platform_of_a_dir_image(world: dict) -> None:
    shown = regfp_json("inspect", "--platform", "linux/arm64/v8", f"dir:{world['src']}")
    content = shown["config"]["content"]  # type: ignore[index]
    assert (content["os"], content["architecture"], content["variant"]) == ("linux", "arm64", "v8")


def test_gc_reports_and_removes_unreachable_blobs(tmp_path: Path) -> None:
    layout = tmp_path / "gc"
    src = make_tree(tmp_path / "src")
    first = regfp_json("copy", f"dir:{src}", f"oci:{layout}:app:1")
    (src / "etc" / "extra").write_text("changed\n")
    second = regfp_json("copy", f"dir:{src}", f"oci:{layout}:app:1")  # the name moves
    assert first["digest"] != second["digest"]  # type: ignore[index]
    old = json.loads(regfp("inspect", f"oci:{layout}@{first['digest']}", "--json").stdout)  # type: ignore[index]
    unreachable = {first["digest"], old["config"]["digest"], old["layers"][0]["digest"]}  # type: ignore[index]
    blobs = layout / "blobs" / "sha256"

    planned = regfp_json("gc", "--dry-run", str(layout))
    assert {r["digest"] for r in planned["removed"]} == unreachable  # type: ignore[index]
    assert planned["dryRun"] is True and planned["kept"] == 3  # type: ignore[index]
    assert all((blobs / d.split(":")[1]).exists() for d in unreachable)

    text = clean_run("gc", f"oci:{layout}", code=0).stdout
    assert text.startswith("removed 3 blobs (") and "kept 3" in text
    assert not any((blobs / d.split(":")[1]).exists() for d in unreachable)
    assert regfp_json("verify", str(layout))["ok"] is True  # type: ignore[index]
    assert regfp_json("gc", str(layout))["removed"] == []  # type: ignore[index]


# ---- hostile input -------------------------------------------------------------------------------------

def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    proc = clean_run("inspect", "\x1b[2J\x1b[31mred\x07", code=2)
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "\\x1b[31mred" in proc.stderr
    bad_bytes = os.fsdecode(b"oci:" + os.fsencode(str(tmp_path)) + b"/\xff\xfe:x")  # undecodable path bytes
    proc = clean_run("inspect", bad_bytes, code=1)
    assert "\\xff\\xfe" in proc.stderr


def test_markup_and_emoji_codes_are_printed_literally(world: dict, tmp_path: Path) -> None:
    # Rich would read "[/x]" as a closing tag (and fail) and ":o:" as an emoji code.
    layout = tmp_path / "[/x] [bold]" / "o"
    copied = clean_run("copy", f"oci:{world['out']}:{NAME}", f"oci:{layout}:o:x", code=0).stdout
    assert copied.startswith(f"oci:{layout}:o:x sha256:")
    text = clean_run("inspect", f"oci:{layout}:o:x", code=0).stdout
    assert f"oci:{layout}:o:x" in text


def test_hostile_image_config_is_shown_literally(tmp_path: Path) -> None:
    layout = tmp_path / "hostile"
    with LayoutStore.open_or_create(layout) as store:
        image = Image(config=ImageConfig.new().with_container(
            Env=["EVIL=\x1b]0;pwned\x07[/]"], Labels={"x": "[red]\u202eevil"}))
        store.set_names({"evil:1": write_image(store, image)})
    proc = clean_run("inspect", f"oci:{layout}:evil:1", code=0)
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout
    assert "EVIL=\\x1b]0;pwned\\x07[/]" in proc.stdout and "x=[red]\\u202eevil" in proc.stdout
    doc = regfp_json("inspect", f"oci:{layout}:evil:1")  # JSON keeps the exact value
    assert doc["config"]["content"]["config"]["Labels"] == {"x": "[red]\u202eevil"}  # type: ignore[index]


def test_special_files_in_a_source_tree_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    proc = clean_run("copy", f"dir:{src}", f"oci:{tmp_path / 'out'}:x", code=2)
    assert "pipe" in proc.stderr and "FIFO" in proc.stderr
    out = tmp_path / "out"
    if out.exists():  # the layout may exist, but valid and empty: no name, no stray blob
        assert regfp_json("verify", str(out)) == {"ok": True, "verified": [], "problems": []}
        assert list((out / "blobs" / "sha256").iterdir()) == []


def test_a_damaged_layout_is_a_clear_failure(world: dict, tmp_path: Path) -> None:
    layout = tmp_path / "damaged"
    regfp("copy", f"oci:{world['out']}:{NAME}", f"oci:{layout}:{NAME}")
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"digest": "../../etc/passwd"}]}')
    for command in ("inspect", "verify"):
        proc = clean_run(command, f"oci:{layout}:{NAME}", code=1)
        assert "index.json" in proc.stderr


# ---- shell completion --------------------------------------------------------------------------------

def completion_env(**extra: str) -> dict[str, str]:
    return dict(os.environ, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1", **extra)


def test_show_completion_prints_a_bash_script() -> None:
    proc = clean_run("--show-completion", "bash", code=0, env=completion_env())
    assert "_REGFP_COMPLETE=complete_bash" in proc.stdout
    assert "complete -o default -F _regfp_completion regfp" in proc.stdout


def test_completion_answers_for_commands_and_options() -> None:
    env = completion_env(_REGFP_COMPLETE="complete_bash", COMP_WORDS="regfp ins", COMP_CWORD="1")
    assert clean_run(code=0, env=env).stdout.split() == ["inspect"]
    env = completion_env(_REGFP_COMPLETE="complete_bash", COMP_WORDS="regfp copy --pl", COMP_CWORD="2")
    assert clean_run(code=0, env=env).stdout.split() == ["--platform"]


def test_install_completion_writes_into_home(tmp_path: Path) -> None:
    proc = clean_run("--install-completion", "bash", code=0, env=completion_env(HOME=str(tmp_path)))
    assert "bash completion installed" in proc.stdout
    assert "_REGFP_COMPLETE" in (tmp_path / ".bash_completions" / "regfp.sh").read_text()
    assert ".bash_completions/regfp.sh" in (tmp_path / ".bashrc").read_text()


# ---- progress: on a terminal only ----------------------------------------------------------------------

def run_with_terminal_stderr(*args: str) -> tuple[int, str, bytes]:
    """regfp with stderr on a pseudo-terminal (stdout stays a pipe): (exit code, stdout, terminal bytes)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    # Variables by which rich could be told the terminal is not one (or how wide it is) go.
    ignored = ("NO_COLOR", "TERM", "CI", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "FORCE_COLOR", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    env["TERM"] = "xterm-256color"
    with subprocess.Popen([sys.executable, "-m", "regctl_fp", *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=slave, env=env) as proc:
        os.close(slave)
        seen = []
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen.append(chunk)
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        code = proc.wait(timeout=120)
    os.close(master)
    return code, stdout, b"".join(seen)


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "data.bin", "wb") as f:  # incompressible, so the layer takes real work
        f.write(os.urandom(16 << 20))
    code, stdout, terminal = run_with_terminal_stderr("copy", f"dir:{big}", f"oci:{tmp_path / 'tty'}:x")
    assert code == 0
    assert f"layer of {big}".encode() in terminal and b"/16.8 MB" in terminal  # the bar and its total
    assert stdout.startswith(f"oci:{tmp_path / 'tty'}:x sha256:")  # results stay on stdout, clean

    piped = clean_run("copy", f"dir:{big}", f"oci:{tmp_path / 'pipe'}:x", code=0)
    assert piped.stderr == ""
    assert piped.stdout.split()[1] == stdout.split()[1]  # the bar changes nothing in the result


def _has_grown(tmp: Path) -> bool:
    for blob in tmp.glob("blob.*"):
        try:
            if blob.stat().st_size:
                return True
        except FileNotFoundError:  # committed or aborted in between
            pass
    return False


def test_ctrl_c_leaves_a_valid_layout_and_no_temp_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:  # 64 GiB of zeros that take no disk: the copy runs for long
        f.truncate(64 << 30)
    out = tmp_path / "out"
    with subprocess.Popen([sys.executable, "-m", "regctl_fp", "copy", f"dir:{src}", f"oci:{out}:x", "--json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            deadline = time.monotonic() + 60
            # Interrupt while the layer streams (its temp blob has grown), not while it is being set up.
            while not _has_grown(out / ".regfp" / "tmp"):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130, (stdout, stderr)
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert json.loads(stdout)["error"]["exitCode"] == 130
    assert list((out / ".regfp" / "tmp").iterdir()) == []  # the half-written blob is gone
    assert regfp_json("verify", str(out)) == {"ok": True, "verified": [], "problems": []}
