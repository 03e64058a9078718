"""The ``regfp`` command line: the only code that prints, reads the clock or the environment, or exits.

``main`` is the single exit point: every error becomes a message on stderr (and, with ``--json``, an
error document on stdout) and an exit code: 0 done, 1 the work failed, 2 bad usage or bad input, 130
interrupted (SIGINT), 143 terminated (SIGTERM, how CI cancels a job).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeGuard


def run() -> None:
    """The process's entry point (the ``regfp`` script, ``python -m regctl_fp``): ``main``, then out.

    Tearing the interpreter down (every module's globals, a garbage collection of everything, the
    executor's exit hooks) costs ~40 ms here, more than some commands' work. A finished command has
    nothing left to clean: its files are closed and its temporary directories gone (context managers),
    its threads joined, and its layout locks go with the process. So the streams are flushed and the
    process ends at once. ``main`` itself still raises ``SystemExit``, for callers in a process.

    The cyclic garbage collector runs after every 700 net allocations of tracked objects by default: the
    imports of a warm no-op build alone set off 54 collections (50 young, 4 older) over the ~22,000
    objects they leave. Rarer collections make that command ~7 ms faster (150 ms instead of 157, median
    of 25 runs each, interleaved); cycles are still collected.
    """
    import gc

    gc.set_threshold(50_000, 20, 100)
    try:
        main()
        code: object = 0
    except SystemExit as e:
        code = e.code
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")  # what the interpreter does with sys.exit("message")
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe (``regfp ... | head``): nothing more to say
            pass
    os._exit(code or 0)


def main(argv: list[str] | None = None) -> None:
    global _terminated
    _terminated = False
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _main(argv)
    finally:  # for callers that run main in their own process (tests)
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> None:
    import typer

    from ..errors import RegfpError
    from .app import app
    from .output import guard_streams

    global _failed
    guard_streams()  # before anything can print: no secret this run sends can be shown
    args = sys.argv[1:] if argv is None else list(argv)
    as_json = _wants_json(args)
    # ``diff`` follows diff(1) and cmp(1): 0 same, 1 different, so its failures ("trouble") exit 2.
    _failed = 2 if args[:1] == ["diff"] else 1
    if not args and "_REGFP_COMPLETE" not in os.environ:  # bare ``regfp``: help on stderr, bad usage
        command = typer.main.get_command(app)
        with command.make_context("regfp", [], resilient_parsing=True) as ctx:
            sys.stderr.write(command.get_help(ctx) + "\n")
        _fail("missing command", 2, "UsageError", as_json, shown=True)
    try:
        with _only_the_command_named(app, args):
            try:
                code = app(args=args, prog_name="regfp", standalone_mode=False)
            finally:
                _finish_notes()
    except RegfpError as e:
        _fail(str(e), e.exit_code, type(e).__name__, as_json)
    except typer.Abort:
        _fail("aborted", 1, "Aborted", as_json)
    except KeyboardInterrupt:
        _interrupted(as_json)
    except OSError as e:
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        _fail(f"{e.strerror or e}{where}", 1, "OSError", as_json)
    except Exception as e:
        if _is_click_error(e, "NoArgsIsHelpError"):  # bare ``regfp``: the help, as bad usage
            e.show()
            _fail("missing command", 2, "UsageError", as_json, shown=True)
        if _is_click_error(e, "ClickException"):  # bad usage: unknown option, missing argument...
            _usage_hint(e)
            _fail(_usage_message(e.format_message()), e.exit_code, "UsageError", as_json)
        # A bug: say so plainly; the traceback only on request.
        if os.environ.get("REGFP_DEBUG"):
            raise
        _fail(f"internal error ({type(e).__name__}: {e}); rerun with REGFP_DEBUG=1 for a traceback", 1,
              "InternalError", as_json)
    # Without standalone mode click returns the code of an explicit exit (--help, --version), and
    # turns Ctrl-C into 130 itself.
    if code == 130:
        _interrupted(as_json)
    sys.exit(code if isinstance(code, int) else 0)


_terminated = False


def _finish_notes() -> None:
    """Notes whose checks ran alongside the command (a dirty source), said once it is done."""
    state = sys.modules.get("regctl_fp.cli.source_state")
    if state is not None:
        state.finish_notes()


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds the command like Ctrl-C (every cleanup that runs on an interrupt runs: temp files
    are removed, locks released), then exits 143. Later SIGTERMs are ignored so the cleanup finishes;
    SIGKILL still ends it, and the next writer removes what that leaves behind."""
    global _terminated
    _terminated = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _interrupted(as_json: bool) -> None:
    if _terminated:
        _fail("terminated (SIGTERM)", 143, "Terminated", as_json)
    _fail("interrupted", 130, "Interrupted", as_json)


@contextmanager
def _only_the_command_named(app: Any, args: list[str]) -> Iterator[None]:
    """Typer turns every registered command into a click command on each run, reading each one's
    signature (~14 ms of start-up for all of them) when a run needs only the one it names. When the
    first argument names a command exactly, the others are left out for this run; anything else (an
    option first, a typo that deserves "did you mean", shell completion) builds them all."""
    import typer.main

    commands, groups = app.registered_commands, app.registered_groups
    first = args[0] if args else ""
    keep = [c for c in commands if (c.name or typer.main.get_command_name(c.callback.__name__)) == first]
    keep_groups = [g for g in groups
                   if (g.name if isinstance(g.name, str) else g.typer_instance.info.name) == first]
    if first.startswith("-") or not (keep or keep_groups) or "_REGFP_COMPLETE" in os.environ:
        yield
        return
    app.registered_commands, app.registered_groups = keep, keep_groups
    try:
        yield
    finally:
        app.registered_commands, app.registered_groups = commands, groups


def _wants_json(args: list[str]) -> bool:
    """Whether ``--json`` was asked for; arguments after ``--`` are operands, not options."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


class _ClickError(Protocol):
    """What regfp uses of click's ``ClickException`` (and so of its ``UsageError`` subclasses)."""

    exit_code: int

    def format_message(self) -> str: ...

    def show(self) -> None: ...


def _is_click_error(e: Exception, name: str) -> TypeGuard[_ClickError]:
    """By class name, because typer vendors its own copy of click (``typer._click``) and the plain
    ``click`` package may raise too, depending on the typer version. ``name`` is ``ClickException`` or
    one of its subclasses."""
    return any(cls.__name__ == name for cls in type(e).__mro__)


def _usage_message(text: str) -> str:
    """Click's sentences in the voice of regfp's own errors: lower case, no full stop, a suggestion after
    a semicolon ("No such command 'bild'. Did you mean 'build'?" -> "no such command 'bild'; did you mean
    'build'?")."""
    import re

    text = re.sub(r"\.?\s+Did you mean\b", "; did you mean", text.strip())
    text = text.replace("(Possible options:", "(possible options:").removesuffix(".")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    return text


def _usage_hint(e: object) -> None:
    """Click's usage line and help hint, before our own ``error:`` line (whose text is sanitised)."""
    from .output import note

    ctx = getattr(e, "ctx", None)
    if ctx is not None:
        note(f"{ctx.get_usage()}\nTry '{ctx.command_path} --help' for help.\n")


_failed = 1  # the exit code of "the work failed" for the running command


def _fail(message: str, code: int, kind: str, as_json: bool, *, shown: bool = False) -> None:
    from .output import error, json_error

    if code == 1:
        code = _failed

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the command is over: let nothing cut the report short
    if not shown:
        error(message)
    if as_json:
        json_error(message, code, kind)
    sys.exit(code)
