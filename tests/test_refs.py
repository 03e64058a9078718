"""Image references: a table of what parses to what, what is refused and why, and properties that hold
for any text (only RefError escapes; what parses prints back to itself)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regctl_fp.errors import RefError
from regctl_fp.oci.digest import Digest
from regctl_fp.refs import (
    DirRef,
    LayoutRef,
    Ref,
    RegistryRef,
    check_layout_name,
    check_repository,
    check_tag,
    parse_ref,
    parse_registry,
    split_name,
)

H = "0123456789abcdef" * 4
D = Digest("sha256", H)
D512 = Digest("sha512", H * 2)
HUB = "registry-1.docker.io"


@pytest.mark.parametrize(("text", "expected"), [
    ("oci:out:base/busybox:1", LayoutRef("out", name="base/busybox:1")),
    ("oci:/abs/path:build/hello:" + "a" * 40, LayoutRef("/abs/path", name="build/hello:" + "a" * 40)),
    ("oci:out", LayoutRef("out")),
    ("oci:./rel/dir", LayoutRef("./rel/dir")),
    (f"oci:out@sha256:{H}", LayoutRef("out", digest=D)),
    (f"oci:/odd@dir/x@sha256:{H}", LayoutRef("/odd@dir/x", digest=D)),
    (f"oci:out@sha512:{H * 2}", LayoutRef("out", digest=D512)),
    ("oci:out:v1.0+build", LayoutRef("out", name="v1.0+build")),
    ("oci:out:A--b", LayoutRef("out", name="A--b")),
    ("dir:.", DirRef(".")),
    ("dir:/srv/app root", DirRef("/srv/app root")),
    ("dir:a:b", DirRef("a:b")),
    ("busybox", RegistryRef(HUB, "library/busybox", "latest")),
    ("busybox:1.36", RegistryRef(HUB, "library/busybox", "1.36")),
    ("docker:24", RegistryRef(HUB, "library/docker", "24")),  # the image called docker, not a transport
    ("docker.io/busybox", RegistryRef(HUB, "library/busybox", "latest")),
    ("index.docker.io/library/busybox:1", RegistryRef(HUB, "library/busybox", "1")),
    ("docker://busybox", RegistryRef(HUB, "library/busybox", "latest")),
    ("acme/app", RegistryRef(HUB, "acme/app", "latest")),
    ("ghcr.io/acme/app:v2", RegistryRef("ghcr.io", "acme/app", "v2")),
    ("localhost/app", RegistryRef("localhost", "app", "latest")),
    ("localhost:5000/a/b/c:t_1", RegistryRef("localhost:5000", "a/b/c", "t_1")),
    (f"127.0.0.1:5000/app@sha256:{H}", RegistryRef("127.0.0.1:5000", "app", None, D)),
    (f"127.0.0.1:5000/app:v1@sha256:{H}", RegistryRef("127.0.0.1:5000", "app", "v1", D)),
    ("[::1]:5000/app", RegistryRef("[::1]:5000", "app", "latest")),
    ("[::1]/app", RegistryRef("[::1]", "app", "latest")),
    ("us-east.prod.example.com/app/hello:live", RegistryRef("us-east.prod.example.com", "app/hello", "live")),
    ("reg.example.com/a__b/c-d---e/f.g:T", RegistryRef("reg.example.com", "a__b/c-d---e/f.g", "T")),
    ("localhost:5000", RegistryRef(HUB, "library/localhost", "5000")),  # as docker reads it
])
def test_parses(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("oci:", "layout path"),
    ("oci::name", "layout path"),
    (f"oci:@sha256:{H}", "layout path"),
    ("oci:out:", "empty name"),
    ("oci:out:bad name", "not a valid OCI layout name"),
    ("oci:out:-lead", "not a valid OCI layout name"),
    ("oci:out:trail.", "not a valid OCI layout name"),
    ("oci:out:a//b", "not a valid OCI layout name"),
    ("oci:out@sha256:abc", "64"),
    (f"oci:out@sha256:{H.upper()}", "64"),
    ("dir:", "directory path"),
    ("docker-archive:x.tar", "not supported"),
    ("oci-archive:x.tar", "not supported"),
    ("containers-storage:x", "not supported"),
    ("docker-daemon:x:latest", "not supported"),
    ("https://ghcr.io/acme/app", "not supported"),
    ("Busybox", "not a reference"),
    ("ghcr.io/Acme/app", "not a valid repository name"),
    ("ghcr.io/acme/app:", "not a valid tag"),
    ("ghcr.io/acme/app:-x", "not a valid tag"),
    ("ghcr.io/acme/app:" + "t" * 129, "not a valid tag"),
    ("ghcr.io/acme/app@", "digest"),
    ("ghcr.io/acme/app@sha256:abc", "64"),
    (f"ghcr.io/acme/app@md5:{H[:32]}", "unsupported algorithm"),
    ("ghcr.io/acme//app", "not a valid repository name"),
    ("ghcr.io/acme/app/", "not a valid repository name"),
    ("ghcr.io/", "not a valid repository name"),
    ("/app", "not a valid repository name"),
    ("ghcr.io/a___b", "not a valid repository name"),
    ("ghcr.io/a..b", "not a valid repository name"),
    ("localhost:0/app", "port"),
    ("localhost:99999/app", "port"),
    ("ghcr.io/" + "a" * 256, "at most 255"),
])
def test_refused(text: str, reason: str) -> None:
    with pytest.raises(RefError) as err:
        parse_ref(text)
    assert reason in err.value.reason
    assert err.value.ref == text  # the message quotes what the user typed
    assert str(err.value).startswith(f"bad reference {text!r}: ")


def test_non_string_is_refused() -> None:
    for value in (None, 5, b"busybox"):
        with pytest.raises(RefError):
            parse_ref(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("registry", "plain"), [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1", True), ("127.0.0.1:443", True),
    ("[::1]", True), ("[::1]:5000", True), ("localhost.example.com", False), ("127.0.0.2:5000", False),
    ("ghcr.io", False), ("[::2]:5000", False),
])
def test_plain_http_only_for_loopback_names(registry: str, plain: bool) -> None:
    ref = parse_registry(f"{registry}/app")
    assert ref.plain_http is plain


def test_reference_and_host() -> None:
    assert RegistryRef("h:1", "r", "t").reference == "t"
    assert RegistryRef("h:1", "r", "t", D).reference == D.text  # a digest pins whatever the tag says
    assert RegistryRef("h", "r").reference == "latest"
    assert [RegistryRef(r, "x").host for r in ("h", "h:1", "[::1]", "[::1]:5000")] == ["h", "h", "[::1]", "[::1]"]


def test_small_checkers() -> None:
    assert split_name("base/os:3") == ("base/os", "3")
    assert split_name("localhost:5000/base") == ("localhost:5000/base", "latest")
    assert check_tag("v1.2-rc_3") == "v1.2-rc_3"
    assert check_repository("a/b-c") == "a/b-c"
    assert check_layout_name("rollouts/hello:r12") == "rollouts/hello:r12"
    for bad, check in (("-v", check_tag), ("A/b", check_repository), ("a" * 256, check_repository),
                       ("x y", check_layout_name), ("", check_layout_name)):
        with pytest.raises(RefError):
            check(bad)


@settings(max_examples=1000)
@given(st.one_of(
    st.text(max_size=80),
    st.text(alphabet="oci:dr/@sha256:.-_[]1aAZ09", max_size=60),
    st.builds(lambda s, rest: s + rest, st.sampled_from(["oci:", "dir:", "docker://", "localhost:5000/", "[::1]:"]),
              st.text(alphabet="abcAB09:/@._-[]", max_size=40)),
))
def test_any_text_parses_or_raises_ref_error(text: str) -> None:
    try:
        ref = parse_ref(text)
    except RefError as e:
        assert e.ref == text or e.ref == repr(text) or text in str(e)
        return
    # What parses prints as a reference that parses to the same value.
    assert parse_ref(str(ref)) == ref
    if isinstance(ref, RegistryRef):
        assert ref.tag is not None or ref.digest is not None
        assert ref.reference
        ref.plain_http  # noqa: B018 - must not raise for any registry that parsed
