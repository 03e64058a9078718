"""Which recipe file a command works on, found the way compose and skaffold users expect: the one given
(``RECIPE`` or ``-f/--recipe``), else ``$REGFP_RECIPE``, else ``regfp.yaml`` in the current directory,
else the only ``recipes/*.yaml`` there. A discovered recipe is named on stderr, so a run never works on a
file the user did not see."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInput
from . import output

if TYPE_CHECKING:
    from ..recipe.load import LoadedRecipe

ENV_VAR = "REGFP_RECIPE"
DEFAULT_NAME = "regfp.yaml"
RECIPES_DIR = "recipes"
_SHOWN = 10  # candidates named in the "several recipes" error


def find_recipe(argument: Path | None, option: Path | None) -> Path:
    """The recipe path for this run; discovered ones are announced on stderr."""
    if argument is not None and option is not None and argument != option:
        raise InvalidInput(f"two recipes given ({argument} and -f {option}): give one")
    given = argument if argument is not None else option
    if given is not None:
        return given
    path, how = discover(Path.cwd(), os.environ)
    output.note(f"recipe: {path} ({how})")
    return path


def discover(cwd: Path, environ: Mapping[str, str]) -> tuple[Path, str]:
    """The recipe when none was given, and how it was found (for the note)."""
    from_env = environ.get(ENV_VAR)
    if from_env:
        return Path(from_env), f"from ${ENV_VAR}"
    default = cwd / DEFAULT_NAME
    if default.is_file():
        return Path(DEFAULT_NAME), f"{DEFAULT_NAME} in the current directory"
    found = sorted(p for p in (cwd / RECIPES_DIR).glob("*.yaml") if p.is_file())
    if len(found) == 1:
        return found[0].relative_to(cwd), f"the only recipe in {RECIPES_DIR}/"
    if found:
        names = ", ".join(str(p.relative_to(cwd)) for p in found[:_SHOWN])
        more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        raise InvalidInput(f"several recipes in {RECIPES_DIR}/ ({names}{more}): choose one with -f FILE "
                           f"(or set {ENV_VAR})")
    raise InvalidInput(f"no recipe given and none found: pass RECIPE or -f FILE, set {ENV_VAR}, or run where "
                       f"{DEFAULT_NAME} or a single {RECIPES_DIR}/*.yaml is")


_loaded: dict[Path, LoadedRecipe] = {}


def load(path: Path) -> LoadedRecipe:
    """The recipe at ``path``, loaded once per process: the dirty-source note and the command both read
    it, and parsing and checking it twice would cost start-up (a CLI process runs one command)."""
    from ..recipe.load import load_recipe

    key = Path(path).absolute()
    if key not in _loaded:
        _loaded[key] = load_recipe(path)
    return _loaded[key]
