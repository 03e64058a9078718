"""Command bodies: parse arguments into library calls, render results."""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, assert_never

from ..errors import InvalidInput, RefError
from ..oci import mediatypes as mt
from ..oci.manifest import Index
from ..refs import DirRef, LayoutRef, Ref, RegistryRef, parse_ref
from . import edge, options, output
from .progress import progress_bar

if TYPE_CHECKING:
    from cryptography import x509

    from ..attest.check import Finding
    from ..engine.rebuild import Rebuilt
    from ..oci.descriptor import Descriptor, Platform
    from ..sources import BuildOptions
    from ..stores.base import ReadStore


def _ref(text: str) -> Ref:
    """A reference; a bare path to a layout directory counts as ``oci:PATH``. A path that starts like
    one (``/``, ``./``, ``../``) is taken as a layout even if missing, so the error says "no such
    directory" rather than "not a valid repository name"."""
    if text.startswith(("/", "./", "../")) or text in (".", ".."):
        return LayoutRef(text)
    if ":" not in text.split("/")[0] and (Path(text) / "oci-layout").is_file():
        return LayoutRef(text)
    return parse_ref(text)


def _options(platform: Platform | None = None) -> BuildOptions:
    """How a ``dir:`` source becomes an image: ``--platform`` if given, else this host's."""

    return options.build_options(platform)


def skopeo_dir(ref: Ref) -> tuple[ReadStore, Descriptor] | None:
    """What a ``dir:`` directory written by skopeo's dir: transport holds (an image or a whole index,
    stored, as a layout holds it); None for a plain tree, which regfp computes into an image."""
    if not isinstance(ref, DirRef):
        return None
    from ..stores.skopeodir import open_skopeo_dir

    return open_skopeo_dir(Path(ref.path))


def inspect(text: str, platform: str | None, json_out: bool, raw: bool = False) -> None:
    from ..sources import load_image, open_layout_ref
    from ..stores.base import read_image
    from ..stores.layout import LayoutStore
    from ..stores.referrers import list_referrers
    from . import render

    ref = _ref(text)
    want = edge.parse_platform(platform)
    if raw:
        output.raw(_manifest_bytes(ref, text, want))
        return
    held = open_layout_ref(ref) if isinstance(ref, LayoutRef) else skopeo_dir(ref)
    if held is not None:
        store, desc = held
        if desc.media_type in mt.INDEX_TYPES and want is None:
            index = Index.parse(store.get_manifest(desc), desc.media_type)
            render.index(text, desc, index, json_out, list_referrers(store, desc.digest))
            return
        image = read_image(store, desc, want)
        render.image(text, image, json_out, list_referrers(store, image.digest))
        return
    if isinstance(ref, RegistryRef):
        from . import registry_cmds

        registry_cmds.inspect(ref, text, want, json_out)
        return
    assert isinstance(ref, DirRef)  # a plain tree: a layout or a skopeo dir: directory is held above
    with tempfile.TemporaryDirectory(prefix="regfp-inspect-") as tmp, \
            LayoutStore.open_or_create(Path(tmp) / "layout") as work, progress_bar() as bar:
        image = load_image(ref, work=work, options=_options(want), progress=bar)
    render.image(text, image, json_out)


def _manifest_bytes(ref: Ref, text: str, want: Platform | None) -> bytes:
    """The manifest (or index) exactly as stored, verified against its digest; with a platform, the
    manifest an index picks for it."""
    from ..sources import load_image, open_layout_ref
    from ..stores.base import read_image
    from ..stores.layout import LayoutStore

    def stored(store: ReadStore, desc: Descriptor) -> bytes:
        if want is not None and desc.media_type in mt.INDEX_TYPES:
            return read_image(store, desc, want).manifest_bytes
        return store.get_manifest(desc)

    if isinstance(ref, LayoutRef):
        return stored(*open_layout_ref(ref))
    if (held := skopeo_dir(ref)) is not None:
        return stored(*held)
    if isinstance(ref, RegistryRef):
        from .registry_session import session

        with session() as s:
            return stored(*s.open(ref))
    if isinstance(ref, DirRef):  # computed, not stored: the manifest regfp would write
        with tempfile.TemporaryDirectory(prefix="regfp-inspect-") as tmp, \
                LayoutStore.open_or_create(Path(tmp) / "layout") as work:
            return load_image(ref, work=work, options=_options(want)).manifest_bytes
    assert_never(ref)


def verify(text: str, json_out: bool, ca: Path | None = None, now_text: str | None = None, *,
           deep: bool = False, attestations: bool = False, key: Path | None = None,
           rebuild: bool = False, recipe: Path | None = None) -> None:
    from ..sources import open_layout_ref
    from ..stages.identity_verify import verify_identity
    from ..stores.layout import LayoutStore
    from ..verify import Report, verify_descriptor, verify_layout

    ref = _ref(text)
    held = skopeo_dir(ref)
    if isinstance(ref, DirRef) and held is None:
        _unsupported(ref, text)
    if ca is not None and isinstance(ref, LayoutRef) and ref.name is None and ref.digest is None:
        raise RefError(text, "--ca checks one image's identity: name it (oci:PATH:NAME)")
    if attestations != (key is not None):
        raise InvalidInput("--attestations and --key go together: the attestations are checked with the key")
    if rebuild and recipe is None:
        raise InvalidInput("--rebuild needs --recipe: the recipe that made the image")
    if attestations and isinstance(ref, LayoutRef) and ref.name is None and ref.digest is None:
        raise RefError(text, "--attestations checks one image's: name it (oci:PATH:NAME)")
    public = None
    if key is not None:
        from ..attest.keys import load_public_key

        public = load_public_key(key)
    findings: list[Finding] = []
    rebuilt: Rebuilt | None = None
    with progress_bar() as bar, ExitStack() as stack:
        if isinstance(ref, LayoutRef) and ref.name is None and ref.digest is None:
            report = verify_layout(LayoutStore.open(ref.path), bar, deep=deep)
        else:
            store: ReadStore
            if isinstance(ref, RegistryRef):  # every blob fetched again and checked, as from a layout
                from .registry_session import session

                store, desc = stack.enter_context(session()).open(ref)
                label = text
            elif held is not None:
                store, desc = held
                label = text
            else:
                assert isinstance(ref, LayoutRef)
                store, desc = open_layout_ref(ref)
                label = ref.name or str(ref.digest)
            report = Report()
            verify_descriptor(store, desc, report, label, bar, deep=deep)
            if ca is not None and report.ok:
                from .recipe_cmds import parse_now

                verify_identity(store, desc, _read_ca(ca), report, label, now=parse_now(now_text))
            if public is not None:
                from ..attest.check import check_attestations

                findings = _with_keys_checked(check_attestations(store, desc, public))
                report.problems += [f"{label}: {f.predicate} of {f.subject} ({f.referrer or 'missing'}): {f.problem}"
                                    for f in findings if not f.ok]
                if rebuild and recipe is not None and report.ok:
                    rebuilt = _rebuild(recipe, findings, desc, now_text)
                    if not rebuilt.ok:
                        report.problems.append(_rebuild_problem(label, rebuilt))
    if json_out:
        shown: dict[str, Any] = {"ok": report.ok, "verified": report.checked, "problems": report.problems}
        if public is not None:
            shown["attestations"] = [f.to_json() for f in findings]
        if rebuilt is not None:
            shown["rebuild"] = {"ok": rebuilt.ok, "kind": rebuilt.kind, "name": rebuilt.name, "key": rebuilt.key,
                                "expected": rebuilt.expected, "digest": rebuilt.digest, "madeKey": rebuilt.made_key,
                                "differences": rebuilt.differences}
        output.print_json(shown)
    else:
        for label in report.checked:
            output.line(f"ok  {label}")
        signer = public.keyid[:16] if public is not None else ""
        for f in findings:
            if f.ok:
                output.line(f"ok  {f.predicate} of {f.subject} ({f.referrer}), signed by key {signer}")
        if rebuilt is not None and rebuilt.ok:
            output.line(f"ok  rebuilt {rebuilt.name} from its provenance: {rebuilt.digest}")
        for problem in report.problems:
            output.error(problem)
    if not report.ok:
        raise SystemExit(1)


def _with_keys_checked(findings: list[Finding]) -> list[Finding]:
    """Each verified provenance's parameters must hash to the stage key it names (the key's formula is
    the engine's, hence here and not in the attestation library)."""
    from dataclasses import replace

    from ..engine.rebuild import key_problem

    out = []
    for f in findings:
        if f.ok and f.predicate == "provenance" and f.statement is not None:
            try:
                problem = key_problem(f.statement)
            except InvalidInput as e:
                problem = str(e)
            if problem is not None:
                f = replace(f, problem=problem, statement=None)
        out.append(f)
    return out


def _rebuild(recipe: Path, findings: list[Finding], desc: Descriptor, now_text: str | None) -> Rebuilt:
    """Make the image again from its (verified) provenance in a scratch layout."""
    from ..engine.rebuild import rebuild
    from .recipe_cmds import _git_cache, parse_now
    from .recipe_file import load

    statement = next((f.statement for f in findings if f.subject == desc.digest.text and
                      f.predicate == "provenance" and f.statement is not None), None)
    if statement is None:
        raise InvalidInput(f"{desc.digest} has no verified provenance to rebuild from")
    lr = load(recipe)
    with tempfile.TemporaryDirectory(prefix="regfp-rebuild-") as scratch:
        return rebuild(lr, statement, desc.digest.text, Path(scratch) / "layout", now=parse_now(now_text),
                       options=_options(), git_cache=_git_cache())


def _rebuild_problem(label: str, rebuilt: Rebuilt) -> str:
    if rebuilt.digest is None:
        return f"{label}: not made again: {'; '.join(rebuilt.differences)}"
    if rebuilt.made_key != rebuilt.key:
        why = "; ".join(rebuilt.differences) or "the stage key differs"
        return (f"{label}: made again as {rebuilt.digest} under another stage key (the recipe or an input "
                f"changed since): {why}")
    return f"{label}: made again from the same stage key as {rebuilt.digest}, not {rebuilt.expected}: not reproducible"


def _read_ca(path: Path) -> x509.Certificate:
    from cryptography import x509

    from ..errors import InputFileError, InvalidInput
    from ..regularfile import PEM_LIMIT, read_regular

    try:
        return x509.load_pem_x509_certificate(read_regular(path, PEM_LIMIT, "CA certificate"))
    except InputFileError as e:
        raise InvalidInput(f"--ca {e.message}") from None
    except OSError as e:
        raise InvalidInput(f"--ca {path}: cannot read ({e.strerror})") from None
    except ValueError:
        raise InvalidInput(f"--ca {path}: not a PEM certificate") from None


def gc(text: str, dry_run: bool, json_out: bool, expired: bool = False, now_text: str | None = None) -> None:
    from ..stores.layout import LayoutStore

    ref = _ref(text) if text.startswith("oci:") else LayoutRef(text)
    if not isinstance(ref, LayoutRef):
        _unsupported(ref, text)
    if ref.name is not None or ref.digest is not None:
        raise RefError(text, f"gc works on a whole layout: give its path ({ref.path}), not one image")
    store = LayoutStore.open(ref.path)
    dropped: list[str] = []
    if expired:
        from ..stages.promotion import expired_names
        from .recipe_cmds import parse_now

        dropped = expired_names(store, dict(store.names()), parse_now(now_text))
        if dropped and not dry_run:
            with store:
                store.set_names(dict.fromkeys(dropped))
    # A dry run keeps the expired names but must count what dropping them frees, as the real run does.
    report = store.gc(dry_run=dry_run, dropping=dropped)
    if json_out:
        output.print_json({"removed": [{"digest": d.text, "size": s} for d, s in report.removed],
                           "freed": report.freed, "kept": report.kept, "tempFiles": report.temp_files,
                           "droppedReferrers": [d.text for d in report.referrers],
                           "dryRun": dry_run, "expiredNames": dropped})
        return
    for name in dropped:
        output.line(f"{'would drop' if dry_run else 'dropped'} expired {name}")
    verb = "would remove" if dry_run else "removed"
    temp = f", {report.temp_files} temp files" if report.temp_files else ""
    if report.referrers:
        temp += f", {len(report.referrers)} referrers of images no longer here"
    output.line(f"{verb} {len(report.removed)} blobs ({_size(report.freed)}), kept {report.kept}{temp}")


def _unsupported(ref: Ref, text: str) -> NoReturn:
    if isinstance(ref, RegistryRef):
        raise RefError(text, f"{ref} is a registry reference; this command works on OCI layouts: copy it into "
                             "one first (regfp copy REF oci:PATH:NAME)")
    if isinstance(ref, DirRef):
        raise RefError(text, "a dir: reference is computed from a directory, not stored: this command needs "
                             "an image in an OCI layout (oci:PATH:NAME)")
    raise RefError(text, "not usable here")


def _size(n: int) -> str:
    from .render import human_size

    return human_size(n)
