"""Byte-exact tar headers (POSIX ustar + pax extended records), written by hand for speed and control.

Python's ``tarfile`` costs more per entry than hashing and compressing the data; regfp only needs the
writer side and a fixed, documented encoding: ustar fields when a value fits, a pax ``x`` record
otherwise (long or non-UTF-8 paths, sizes of 8 GiB and more, large ids), no user or group names.
"""

from __future__ import annotations

from .oci.errors import InvalidInput

BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
DIRECTORY = b"5"
PAX = b"x"

_MAX_OCTAL_8 = 0o7777777  # 7 digits + NUL
_MAX_OCTAL_12 = 0o77777777777  # 11 digits + NUL (8 GiB - 1 for sizes)
_PAX_NAME = b"././@PaxHeader"


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode("ascii") + body


def _ustar(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
           linkname: bytes) -> bytes:
    header = b"".join((
        name.ljust(100, b"\0"),
        _octal(mode, 8),
        _octal(uid, 8),
        _octal(gid, 8),
        _octal(size, 12),
        _octal(mtime, 12),
        b"        ",  # checksum placeholder: eight spaces
        typeflag,
        linkname.ljust(100, b"\0"),
        b"ustar\x0000",
        b"\0" * 32,  # uname
        b"\0" * 32,  # gname
        _octal(0, 8),
        _octal(0, 8),
        b"\0" * 155,  # prefix: unused, long names go to pax records
        b"\0" * 12,
    ))
    checksum = b"%06o\0 " % sum(header)
    return header[:148] + checksum + header[156:]


def _fits_field(value: bytes, width: int) -> bool:
    return len(value) <= width and b"\0" not in value


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def header(name: bytes, *, typeflag: bytes, mode: int, uid: int, gid: int, mtime: int, size: int = 0,
           linkname: bytes = b"") -> bytes:
    """The header block(s) of one entry: a pax record first when any field does not fit ustar."""
    records: list[bytes] = []
    binary = False
    if len(name) > 100:
        records.append(_pax_record("path", name))
        binary = binary or not _is_utf8(name)
        name = name[:100]
    if len(linkname) > 100:
        records.append(_pax_record("linkpath", linkname))
        binary = binary or not _is_utf8(linkname)
        linkname = linkname[:100]
    if size > _MAX_OCTAL_12:
        records.append(_pax_record("size", str(size).encode("ascii")))
        size_field = 0
    else:
        size_field = size
    if uid > _MAX_OCTAL_8:
        records.append(_pax_record("uid", str(uid).encode("ascii")))
        uid = 0
    if gid > _MAX_OCTAL_8:
        records.append(_pax_record("gid", str(gid).encode("ascii")))
        gid = 0
    if not 0 <= mtime <= _MAX_OCTAL_12:
        # An epoch past 2242 (or before 1970) is a caller's mistake, e.g. SOURCE_DATE_EPOCH in milliseconds.
        raise InvalidInput(f"mtime {mtime} is outside the range tar headers can hold (0 to {_MAX_OCTAL_12})")
    main = _ustar(name, mode & 0o7777, uid, gid, size_field, mtime, typeflag, linkname)
    if not records:
        return main
    if binary:
        records.insert(0, _pax_record("hdrcharset", b"BINARY"))
    payload = b"".join(records)
    pax = _ustar(_PAX_NAME, 0o644, 0, 0, len(payload), mtime, PAX, b"")
    return pax + payload + padding(len(payload)) + main
