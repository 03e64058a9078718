"""tarformat: hand-written ustar/pax headers must read back exactly with Python's tarfile (an independent
parser) and keep the encoding rules: ustar when a value fits, a pax record when it does not."""

from __future__ import annotations

import io
import os
import re
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regctl_fp import tarformat as tf
from regctl_fp.errors import InvalidInput

GIB = 1 << 30


def parse_first(blocks: bytes) -> tarfile.TarInfo:
    """The first member described by ``blocks`` (headers only: data is never read)."""
    with tarfile.open(fileobj=io.BytesIO(blocks), mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
        member = tar.next()
    assert member is not None
    return member


def pax_records(blocks: bytes) -> dict[bytes, bytes]:
    """The pax records of a header, split by their own length prefixes (so a wrong length shows)."""
    assert blocks[156:157] == tf.PAX
    size = int(blocks[124:136].rstrip(b"\0"), 8)
    payload = blocks[512:512 + size]
    out = {}
    while payload:
        length = int(payload.split(b" ", 1)[0])
        record, payload = payload[:length], payload[length:]
        assert record.endswith(b"\n"), record
        key, _, value = record[:-1].split(b" ", 1)[1].partition(b"=")
        out[key] = value
    return out


def test_plain_file_header_fields() -> None:
    h = tf.header(b"etc/hostname", typeflag=tf.REGULAR, mode=0o100755, uid=12, gid=34, mtime=1_700_000_000,
                  size=5)
    assert len(h) == 512
    m = parse_first(h + b"hello" + tf.padding(5) + tf.END_OF_ARCHIVE)
    assert (m.name, m.size, m.mode, m.uid, m.gid, m.mtime) == ("etc/hostname", 5, 0o755, 12, 34, 1_700_000_000)
    assert m.isreg()
    assert (m.uname, m.gname) == ("", "")
    assert h[257:265] == b"ustar\x0000"
    # The checksum field as tar defines it: the byte sum with the field itself read as spaces.
    blanked = h[:148] + b" " * 8 + h[156:]
    assert int(h[148:154], 8) == sum(blanked)


def test_exactly_100_byte_name_uses_no_pax_record() -> None:
    name = b"d/" + b"n" * 98
    h = tf.header(name, typeflag=tf.REGULAR, mode=0o644, uid=0, gid=0, mtime=0)
    assert len(h) == 512
    assert parse_first(h + tf.END_OF_ARCHIVE).name == name.decode()


@pytest.mark.parametrize("length", [101, 200, 255, 4000])
def test_long_names_go_to_a_pax_path_record(length: int) -> None:
    name = (b"dir/" + b"x" * length)[:length]
    h = tf.header(name, typeflag=tf.REGULAR, mode=0o644, uid=0, gid=0, mtime=7)
    assert pax_records(h)[b"path"] == name
    m = parse_first(h + tf.END_OF_ARCHIVE)
    assert m.name == name.decode()
    assert m.mtime == 7


def test_non_utf8_long_name_declares_binary_charset() -> None:
    name = b"caf\xe9/" + b"\xff" * 150
    h = tf.header(name, typeflag=tf.REGULAR, mode=0o644, uid=0, gid=0, mtime=0)
    records = pax_records(h)
    assert records[b"hdrcharset"] == b"BINARY"
    assert records[b"path"] == name
    assert os.fsencode(parse_first(h + tf.END_OF_ARCHIVE).name) == name


def test_utf8_long_name_has_no_charset_record() -> None:
    name = "données/".encode() + "é".encode() * 80
    h = tf.header(name, typeflag=tf.REGULAR, mode=0o644, uid=0, gid=0, mtime=0)
    assert b"hdrcharset" not in pax_records(h)
    assert parse_first(h + tf.END_OF_ARCHIVE).name == name.decode()


def test_non_utf8_short_name_stays_in_ustar() -> None:
    name = b"bin/\xfe\xff"
    h = tf.header(name, typeflag=tf.REGULAR, mode=0o644, uid=0, gid=0, mtime=0)
    assert len(h) == 512
    assert os.fsencode(parse_first(h + tf.END_OF_ARCHIVE).name) == name


@pytest.mark.parametrize("typeflag", [tf.SYMLINK, tf.HARDLINK])
def test_long_link_targets(typeflag: bytes) -> None:
    target = b"/" + b"t/" * 150 + b"end"
    h = tf.header(b"link", typeflag=typeflag, mode=0o777, uid=0, gid=0, mtime=0, linkname=target)
    assert pax_records(h)[b"linkpath"] == target
    m = parse_first(h + tf.END_OF_ARCHIVE)
    assert m.linkname == target.decode()
    assert m.issym() if typeflag == tf.SYMLINK else m.islnk()


@pytest.mark.parametrize("size", [8 * GIB - 1, 8 * GIB, 8 * GIB + 1, 123 * GIB + 17])
def test_sizes_around_8_gib(size: int) -> None:
    h = tf.header(b"big", typeflag=tf.REGULAR, mode=0o644, uid=0, gid=0, mtime=0, size=size)
    if size < 8 * GIB:
        assert len(h) == 512
    else:
        assert pax_records(h)[b"size"] == str(size).encode()
        assert int(h[-512:][124:136].rstrip(b"\0"), 8) == 0  # the ustar field is not trusted
    assert parse_first(h).size == size


def test_large_ids_use_pax_records() -> None:
    h = tf.header(b"f", typeflag=tf.REGULAR, mode=0o644, uid=0o7777777 + 1, gid=3_000_000_000, mtime=0)
    records = pax_records(h)
    assert records[b"uid"] == str(0o7777777 + 1).encode()
    assert records[b"gid"] == b"3000000000"
    m = parse_first(h + tf.END_OF_ARCHIVE)
    assert (m.uid, m.gid) == (0o7777777 + 1, 3_000_000_000)


@pytest.mark.parametrize("mtime", [-1, 0o77777777777 + 1, 99_999_999_999])
def test_mtime_out_of_range_is_bad_input(mtime: int) -> None:
    with pytest.raises(InvalidInput, match="mtime"):
        tf.header(b"f", typeflag=tf.REGULAR, mode=0o644, uid=0, gid=0, mtime=mtime)


def test_directory_and_mode_bits() -> None:
    h = tf.header(b"tmp/", typeflag=tf.DIRECTORY, mode=0o41777, uid=0, gid=0, mtime=0)
    m = parse_first(h + tf.END_OF_ARCHIVE)
    assert m.isdir()
    assert m.mode == 0o1777  # file-type bits never leak into the mode field


def test_padding() -> None:
    assert [len(tf.padding(n)) for n in (0, 1, 511, 512, 513)] == [0, 511, 1, 0, 511]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
def test_pax_record_length_prefix_is_exact(value: str) -> None:
    # Values whose record length crosses a power of ten (9/10, 99/100, ...) are where the prefix goes wrong.
    for pad in (0, 1, 2, 85, 86, 87, 88, 89, 90, 985, 986, 987, 988, 989, 990):
        raw = value.encode() + b"a" * pad
        record = tf._pax_record("path", raw)
        length = re.match(rb"(\d+) ", record)
        assert length is not None
        assert int(length.group(1)) == len(record)
        assert record.endswith(b" path=" + raw + b"\n")


names = st.lists(st.binary(min_size=1, max_size=60).filter(lambda b: b"\0" not in b and b"/" not in b),
                 min_size=1, max_size=6).map(lambda parts: b"/".join(parts))


@settings(max_examples=200, deadline=None)
@given(name=names, size=st.integers(0, 20 * GIB), mode=st.integers(0, 0o7777),
       uid=st.integers(0, 1 << 32), mtime=st.integers(0, 0o77777777777),
       link=st.binary(max_size=300).filter(lambda b: b"\0" not in b))
def test_any_header_reads_back(name: bytes, size: int, mode: int, uid: int, mtime: int, link: bytes) -> None:
    h = tf.header(name, typeflag=tf.REGULAR, mode=mode, uid=uid, gid=uid, mtime=mtime, size=size)
    assert len(h) % 512 == 0
    m = parse_first(h)
    assert (os.fsencode(m.name), m.size, m.mode, m.uid, m.gid, m.mtime) == (name, size, mode, uid, uid, mtime)
    if link:
        s = tf.header(name, typeflag=tf.SYMLINK, mode=0o777, uid=0, gid=0, mtime=mtime, linkname=link)
        m = parse_first(s + tf.END_OF_ARCHIVE)
        assert (os.fsencode(m.name), os.fsencode(m.linkname)) == (name, link)
