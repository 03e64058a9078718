"""The typer application. Commands import the library lazily so start-up stays fast.

No ``from __future__ import annotations`` here: typer reads every parameter's annotation, and string
annotations would cost an ``eval`` each on every run (~10 ms).
"""

from pathlib import Path
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
PlatformOpt = Annotated[str | None, typer.Option(
    "--platform", metavar="OS/ARCH[/VARIANT]",
    help="The platform to pick from an index (for dir: sources, the platform the image declares).")]
InsecureOpt = Annotated[list[str] | None, typer.Option(
    "--insecure-registry", metavar="HOST",
    help="Use plain HTTP for this registry (repeatable; localhost and 127.0.0.1 always may).")]
NoReferrersOpt = Annotated[bool, typer.Option(
    "--no-referrers", help="Leave the image's referrers (artifacts whose subject it is: SBOMs, provenance, "
                           "signatures) behind.")]
CaFileOpt = Annotated[str | None, typer.Option(
    "--ca-file", metavar="PEM", help="Also trust this CA for registries (besides /etc/docker/certs.d/HOST/).")]


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
def inspect(ref: Annotated[str, typer.Argument(
                metavar="REF", help="oci:PATH:NAME, oci:PATH@DIGEST, dir:PATH or HOST/REPO[:TAG|@DIGEST]")],
            platform: PlatformOpt = None, json_out: JsonOpt = False,
            raw: Annotated[bool, typer.Option("--raw", help="Print the manifest (or index) bytes exactly as "
                                              "stored, nothing else.")] = False,
            insecure_registry: InsecureOpt = None, ca_file: CaFileOpt = None) -> None:
    """Show an image's manifest, config, layers and annotations (or an index's entries)."""
    from . import commands, registry_session

    if raw and json_out:
        raise typer.BadParameter("--raw prints the stored bytes; --json a summary: give one", param_hint="--raw")
    registry_session.configure(insecure_registry, ca_file)
    commands.inspect(ref, platform, json_out, raw)


@app.command("ls")
def ls(target: Annotated[str, typer.Argument(
           metavar="LAYOUT|REGISTRY/REPO", help="an OCI layout (PATH or oci:PATH) or a registry repository")],
       json_out: JsonOpt = False, insecure_registry: InsecureOpt = None, ca_file: CaFileOpt = None) -> None:
    """List a layout's names or a repository's tags, each with its digest and media type."""
    from . import ls_cmd, registry_session

    registry_session.configure(insecure_registry, ca_file)
    ls_cmd.ls(target, json_out)


@app.command()
def verify(ref: Annotated[str, typer.Argument(
               metavar="REF", help="oci:PATH[:NAME|@DIGEST], a layout directory, or a registry reference")],
           ca: Annotated[Path | None, typer.Option("--ca", help="Also check the image's identity certificate "
                                                   "against this CA (chain, validity, SAN).")] = None,
           now: Annotated[str | None, typer.Option("--now", help="ISO 8601 time for --ca validity "
                                                   "(default: now).")] = None,
           deep: Annotated[bool, typer.Option("--deep", help="Also read every layer's tar archive to its end "
                                              "(a tar cut short can still match its digests).")] = False,
           attestations: Annotated[bool, typer.Option("--attestations", help="Also check the image's signed SBOM "
                                                      "and provenance referrers (needs --key).")] = False,
           key: Annotated[Path | None, typer.Option("--key", help="Public key (PEM) the attestations must be "
                                                    "signed with.")] = None,
           rebuild: Annotated[bool, typer.Option("--rebuild", help="Also make the image again from its signed "
                                                 "provenance in a scratch layout and compare digests (needs "
                                                 "--key and --recipe).")] = False,
           recipe: Annotated[Path | None, typer.Option("--recipe", help="The recipe that made the image, for "
                                                       "--rebuild (its source is checked out at the "
                                                       "provenance's commit).")] = None,
           json_out: JsonOpt = False) -> None:
    """Re-read every blob and check digests, sizes and diff_ids (every platform of an index, and that each
    entry's platform is its image's); exit 1 naming anything bad."""
    from . import commands

    commands.verify(ref, json_out, ca, now, deep=deep, attestations=attestations or rebuild, key=key,
                    rebuild=rebuild, recipe=recipe)


@app.command()
def copy(src: Annotated[str, typer.Argument(
             metavar="SRC", help="source: oci:PATH:NAME, oci:PATH@DIGEST, dir:PATH or HOST/REPO[:TAG|@DIGEST]")],
         dst: Annotated[str, typer.Argument(
             metavar="DST", help="destination: oci:PATH:NAME or HOST/REPO[:TAG]")],
         platform: PlatformOpt = None, json_out: JsonOpt = False,
         insecure_registry: InsecureOpt = None, ca_file: CaFileOpt = None,
         private: Annotated[bool, typer.Option("--private", help="The destination repository is private: "
                                               "images carrying a private key may go there.")] = False,
         no_referrers: NoReferrersOpt = False) -> None:
    """Copy an image, digests preserved, with its referrers (SBOMs, provenance, signatures); the destination
    name moves only once everything is stored."""
    from . import copy_cmd, registry_session

    registry_session.configure(insecure_registry, ca_file)
    copy_cmd.copy(src, dst, platform, json_out, private, referrers=not no_referrers)


@app.command()
def login(server: Annotated[str, typer.Argument(metavar="HOST", help="registry host, e.g. ghcr.io")],
          username: Annotated[str, typer.Option("--username", "-u", help="user name")] = "",
          password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                       help="Read the password (or token) from stdin.")] = False,
          json_out: JsonOpt = False, insecure_registry: InsecureOpt = None, ca_file: CaFileOpt = None) -> None:
    """Check credentials against a registry and store them where docker does (config.json or its helper)."""
    from . import registry_cmds, registry_session

    registry_session.configure(insecure_registry, ca_file)
    registry_cmds.login(server, username, password_stdin, json_out)


@app.command()
def gc(layout: Annotated[str, typer.Argument(
       metavar="LAYOUT", help="path of an OCI layout (or oci:PATH)")],
       dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would go; delete nothing.")] = False,
       expired: Annotated[bool, typer.Option("--expired", help="First drop ad-hoc/ debug names past their "
                                             "dev.regfp.expires.")] = False,
       now: Annotated[str | None, typer.Option("--now", help="ISO 8601 time for --expired (default: now).")] = None,
       json_out: JsonOpt = False) -> None:
    """Delete blobs that no name in the layout reaches."""
    from . import commands

    commands.gc(layout, dry_run, json_out, expired, now)


RecipeArg = Annotated[Path | None, typer.Argument(
    metavar="[RECIPE]", show_default=False,
    help="recipe file (YAML, format 1); default: -f, else $REGFP_RECIPE, else ./regfp.yaml, else the only "
         "recipes/*.yaml")]
RecipeOpt = Annotated[Path | None, typer.Option("-f", "--recipe", metavar="RECIPE",
                                                help="recipe file (the same as the RECIPE argument)")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="OCI layout to write (default: the recipe's output).")]
NowOpt = Annotated[str | None, typer.Option("--now", help="ISO 8601 time to judge expiry by (default: now).")]


def _recipe(argument: Path | None, option: Path | None, *, reads_source: bool = False) -> Path:
    """The recipe this run works on; for commands that read its source, a note if that is dirty."""
    from .recipe_file import find_recipe

    path = find_recipe(argument, option)
    if reads_source:
        from .source_state import note_if_dirty

        note_if_dirty(path)
    return path


CacheOpt = Annotated[str | None, typer.Option("--cache", help="Registry repository used as a shared stage cache "
                                             "(overrides the recipe's cache:).")]


@app.command()
def build(recipe: RecipeArg = None, recipe_opt: RecipeOpt = None, out: OutOpt = None,
          only: Annotated[list[str] | None, typer.Option("--only", help="Only this stage (repeatable).")] = None,
          now: NowOpt = None, cache: CacheOpt = None,
          shard: Annotated[str | None, typer.Option("--shard", help="I/N: compute only this shard's share of "
                                                    "the independent units.")] = None,
          push: Annotated[bool, typer.Option("--push", help="Then push every image to the recipe's registry "
                                             "prefixes (push.prefix, per environment too).")] = False,
          no_referrers: NoReferrersOpt = False, json_out: JsonOpt = False) -> None:
    """Compute the recipe's chain into its OCI layout; cached stages cost nothing."""
    from . import recipe_cmds

    path = _recipe(recipe, recipe_opt, reads_source=True)
    recipe_cmds.build(path, out, only or [], now, json_out, cache=cache, shard_text=shard, push=push,
                      referrers=not no_referrers)


@app.command()
def plan(recipe: RecipeArg = None, recipe_opt: RecipeOpt = None, out: OutOpt = None, now: NowOpt = None,
         fmt: Annotated[str, typer.Option("--format", help="text (a tree), json or dot.")] = "text",
         json_out: JsonOpt = False) -> None:
    """Show the chain as a DAG: names, short keys, and what is cached, will build, or expired (and why)."""
    from . import recipe_cmds

    if fmt not in ("text", "json", "dot"):
        raise typer.BadParameter("must be text, json or dot", param_hint="--format")
    if json_out and fmt not in ("text", "json"):
        raise typer.BadParameter(f"--json asks for JSON and --format {fmt} for {fmt}: give one",
                                 param_hint="--json")
    recipe_cmds.plan(_recipe(recipe, recipe_opt, reads_source=True), out, now, "json" if json_out else fmt)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the recipe format, generated from the model."""
    from . import recipe_cmds

    recipe_cmds.schema()


@app.command()
def patch(recipe: RecipeArg = None, recipe_opt: RecipeOpt = None, out: OutOpt = None,
          channel: Annotated[list[str] | None,
                             typer.Option("--channel", help="Only this channel (repeatable).")] = None,
          now: NowOpt = None, json_out: JsonOpt = False) -> None:
    """Rebase the build onto the recipe's OS channels (stable, current, next): no app rebuild."""
    from . import recipe_cmds

    path = _recipe(recipe, recipe_opt, reads_source=True)
    recipe_cmds.build(path, out, ["build", "patch"], now, json_out, channels=channel or None)


@app.command()
def rebase(src: Annotated[str, typer.Argument(metavar="IMAGE", help="the image: oci:PATH:NAME")],
           new_base: Annotated[str, typer.Argument(metavar="NEW_BASE", help="the new base (oci: or dir:)")],
           dst: Annotated[str, typer.Argument(metavar="DST", help="where the result goes: oci:PATH:NAME")],
           from_: Annotated[str | None, typer.Option("--from", help="the old base, when the image does not "
                                                     "name it in its base annotations")] = None,
           channel: Annotated[str | None, typer.Option("--channel", help="record this channel name")] = None,
           platform: PlatformOpt = None, json_out: JsonOpt = False) -> None:
    """Move an image onto a new base without rebuilding it (no layer blob is read or rewritten)."""
    from . import rebase_cmd

    rebase_cmd.rebase(src, new_base, dst, from_, channel, platform, json_out)


@app.command()
def rollout(recipe: RecipeArg = None, recipe_opt: RecipeOpt = None, out: OutOpt = None,
            delta: Annotated[int | None, typer.Option("--delta", help="Show the release and digest n-N resolves "
                                                      "to, per environment; cuts nothing.")] = None,
            env: Annotated[str | None, typer.Option("--env", help="LOCATION.ENVIRONMENT the --delta is for "
                                                    "(default: every environment).")] = None,
            status: Annotated[bool, typer.Option("--status", help="Show the stream; cut nothing.")] = False,
            yank: Annotated[str | None, typer.Option("--yank", help="Mark release rN bad.")] = None,
            unyank: Annotated[str | None, typer.Option("--unyank", help="Undo --yank rN.")] = None,
            now: NowOpt = None, json_out: JsonOpt = False) -> None:
    """Cut a release when the rollout channel has a new image; show who runs what (--status, --delta: cut nothing)."""
    from . import rollout_cmds

    if yank and unyank:
        from ..errors import InvalidInput

        raise InvalidInput("--yank and --unyank are alternatives: give one per run")
    path = _recipe(recipe, recipe_opt, reads_source=not (status or yank or unyank or delta is not None))
    rollout_cmds.rollout(path, out, delta, env, status, yank, unyank, now, json_out)


@app.command()
def cohort(client_id: Annotated[str, typer.Argument(metavar="CLIENT_ID", help="the client's stable id")],
           recipe: Annotated[Path | None, typer.Option("-f", "--recipe", help="recipe with rollouts.cohorts "
                                                       "(default: found as for build, unless --name)")] = None,
           name: Annotated[str | None, typer.Option("--name", help="rollout name (without --recipe)")] = None,
           buckets: Annotated[int | None, typer.Option("--buckets", help="bucket count (without --recipe)")] = None,
           json_out: JsonOpt = False) -> None:
    """Print the cohort name a client should pull: sha256("<name>:<client>")[:8] mod buckets."""
    from . import rollout_cmds

    if recipe is None and name is None and buckets is None:
        recipe = _recipe(None, None)
    rollout_cmds.cohort(client_id, recipe, name, buckets, json_out)


@app.command("debug-image")
def debug_image(recipe: RecipeArg = None, recipe_opt: RecipeOpt = None,
                ssh_key: Annotated[list[Path] | None, typer.Option("--ssh-key", help="A public key allowed to log "
                                                                   "in as root (repeatable).")] = None,
                channel: Annotated[str | None, typer.Option("--channel", help="Patch channel (default: the "
                                                            "rollout channel).")] = None,
                release: Annotated[str | None, typer.Option("--release", help="Debug release rN.")] = None,
                delta: Annotated[int | None, typer.Option("--delta", help="Debug the release at n-N.")] = None,
                ttl: Annotated[str | None, typer.Option("--ttl", help="Expiry (default: debug.ttl).")] = None,
                sshd_only: Annotated[bool, typer.Option("--sshd-only", help="Run sshd alone, not the app.")] = False,
                port: Annotated[int, typer.Option("--port", help="sshd port inside the image.")] = 2222,
                platform: Annotated[str | None, typer.Option(
                    "--platform", metavar="OS/ARCH[/VARIANT]",
                    help="Which platform's image of a multi-platform release to debug (default: this "
                         "machine's).")] = None,
                out: OutOpt = None, now: NowOpt = None, json_out: JsonOpt = False) -> None:
    """An ad-hoc debug image: the patched app plus tools, root and sshd with your key (dev identity only)."""
    from . import debug_cmds

    path = _recipe(recipe, recipe_opt, reads_source=True)
    debug_cmds.debug_image(path, ssh_key or [], channel, release, delta, ttl, sshd_only, port, out, now, json_out,
                           platform)


data_app = typer.Typer(name="data", help="Files, directories, Git trees and Helm charts as OCI artifacts.",
                       no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app)


@data_app.command("push")
def data_push(paths: Annotated[list[str] | None, typer.Argument(
                  metavar="PATH...", help="files and directories (one layer each), or one Helm chart .tgz")] = None,
              to: Annotated[str, typer.Option("--to", metavar="REF", help="oci:PATH:NAME or HOST/REPO[:TAG]")] = "",
              artifact_type: Annotated[str | None, typer.Option(
                  "--artifact-type", help="artifactType (default application/vnd.regfp.data.v1, or .source.v1 "
                  "for --git)")] = None,
              annotation: Annotated[list[str] | None, typer.Option(
                  "--annotation", metavar="KEY=VALUE", help="manifest annotation (repeatable)")] = None,
              compression: Annotated[str, typer.Option(
                  "--compression", help="for directory and Git tree layers: gzip, zstd or none")] = "gzip",
              fmt: Annotated[str, typer.Option(
                  "--format", help="auto (a chart .tgz is pushed as Helm does), data or helm")] = "auto",
              media_type: Annotated[str | None, typer.Option(
                  "--media-type", help="media type of file layers (default application/octet-stream)")] = None,
              git: Annotated[str | None, typer.Option("--git", metavar="REPO",
                                                      help="store this Git repository's tree at --ref")] = None,
              ref: Annotated[str, typer.Option("--ref", help="branch, tag or full commit id for --git")] = "HEAD",
              subdir: Annotated[str, typer.Option("--subdir", help="only this directory of the tree")] = "",
              url: Annotated[str | None, typer.Option(
                  "--url", help="org.opencontainers.image.source for --git")] = None,
              created: Annotated[str | None, typer.Option(
                  "--created", help="ISO 8601 time a Helm chart records (default: SOURCE_DATE_EPOCH, else the "
                  "archive's mtime, as helm push)")] = None,
              json_out: JsonOpt = False, insecure_registry: InsecureOpt = None, ca_file: CaFileOpt = None) -> None:
    """Store files and directories (or a Git tree, or a Helm chart) as an OCI artifact; same inputs, same digest."""
    from . import data_cmds, registry_session

    if not to:
        raise typer.BadParameter("where to push: --to oci:PATH:NAME or HOST/REPO[:TAG]", param_hint="--to")
    registry_session.configure(insecure_registry, ca_file)
    opts = data_cmds.PushOptions(artifact_type=artifact_type, annotations=tuple(annotation or ()),
                                 compression=compression, fmt=fmt, media_type=media_type, git=git, git_ref=ref,
                                 subdir=subdir, url=url, created=created)
    data_cmds.push(paths or [], to, opts, json_out)


@data_app.command("pull")
def data_pull(ref: Annotated[str, typer.Argument(metavar="REF", help="oci:PATH:NAME or HOST/REPO[:TAG|@DIGEST]")],
              dest: Annotated[str, typer.Argument(metavar="DIR", help="directory to write into (created)")],
              overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files that exist.")] = False,
              platform: PlatformOpt = None, json_out: JsonOpt = False,
              insecure_registry: InsecureOpt = None, ca_file: CaFileOpt = None) -> None:
    """Write an artifact's files into DIR, verified; titles that would escape DIR are refused."""
    from . import data_cmds, registry_session

    registry_session.configure(insecure_registry, ca_file)
    data_cmds.pull(ref, dest, overwrite, platform, json_out)


@app.command("diff")
def diff_cmd(a: Annotated[str, typer.Argument(metavar="A", help="an image: oci:, dir: or registry reference")],
             b: Annotated[str, typer.Argument(metavar="B", help="the image to compare it with")],
             no_files: Annotated[bool, typer.Option("--no-files", help="Skip the file-level comparison.")] = False,
             platform: PlatformOpt = None, json_out: JsonOpt = False,
             insecure_registry: InsecureOpt = None, ca_file: CaFileOpt = None) -> None:
    """Layers added/removed/shared, config differences, and file changes between two images."""
    from . import diff_cmd as body
    from . import registry_session

    registry_session.configure(insecure_registry, ca_file)
    body.diff(a, b, platform, not no_files, json_out)
