"""The typer application. Commands import the library lazily so start-up stays fast."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__

app = typer.Typer(
    name="regfp",
    help="Container images as immutable values: compute a recipe's chain into an OCI layout or a registry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
PlatformOpt = Annotated[str | None, typer.Option("--platform", help="os/arch[/variant] to pick from an index.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"regfp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """regfp: container images as immutable values, composed like functions."""


@app.command()
def inspect(ref: Annotated[str, typer.Argument(help="oci:PATH:NAME, oci:PATH@DIGEST or dir:PATH")],
            platform: PlatformOpt = None, json_out: JsonOpt = False) -> None:
    """Show an image's manifest, config, layers and annotations (or an index's entries)."""
    from . import commands

    commands.inspect(ref, platform, json_out)


@app.command()
def verify(ref: Annotated[str, typer.Argument(help="oci:PATH[:NAME|@DIGEST], or a layout directory")],
           json_out: JsonOpt = False) -> None:
    """Re-read every blob and check digests, sizes and diff_ids; exit 1 naming anything bad."""
    from . import commands

    commands.verify(ref, json_out)


@app.command()
def copy(src: Annotated[str, typer.Argument(help="source: oci:PATH:NAME, oci:PATH@DIGEST or dir:PATH")],
         dst: Annotated[str, typer.Argument(help="destination: oci:PATH:NAME")],
         platform: PlatformOpt = None, json_out: JsonOpt = False) -> None:
    """Copy an image, digests preserved; the destination name moves only once everything is stored."""
    from . import commands

    commands.copy(src, dst, platform, json_out)


@app.command()
def gc(layout: Annotated[str, typer.Argument(help="path of an OCI layout (or oci:PATH)")],
       dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would go; delete nothing.")] = False,
       json_out: JsonOpt = False) -> None:
    """Delete blobs that no name in the layout reaches."""
    from . import commands

    commands.gc(layout, dry_run, json_out)
