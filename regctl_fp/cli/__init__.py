"""The ``regfp`` command line: the only code that prints, reads the clock or the environment, or exits."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    from ..errors import RegfpError
    from .app import app

    try:
        app(args=argv, prog_name="regfp", standalone_mode=True)
    except RegfpError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as e:
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        _fail(f"{e.strerror or e}{where}", 1)
    except Exception as e:  # a bug: say so plainly; the traceback only on request
        if os.environ.get("REGFP_DEBUG"):
            raise
        _fail(f"internal error ({type(e).__name__}: {e}); rerun with REGFP_DEBUG=1 for a traceback", 1)


def _fail(message: str, code: int) -> None:
    from .output import error

    error(message)
    sys.exit(code)
