"""Reading image files a user names, without trusting the path or what the file claims to be.

A path on a command line or in a spec can name anything: a named pipe (``open`` blocks until a
writer appears, forever), ``/dev/zero`` or ``/dev/urandom`` (``st_size`` is 0, so a size check
passes and the read never ends), a directory, or a file that grows while it is read. So
:func:`read_image_file`

1. refuses a path holding a NUL byte (the OS cannot name it) with a message, not a ``ValueError``;
2. ``stat``\\ s the path and opens it only when it is a regular file;
3. opens with ``O_NONBLOCK`` anyway and checks ``fstat`` again, because the path may have been
   swapped for a pipe or device between the two calls;
4. reads at most ``max_bytes + 1`` bytes whatever the file says its size is, and refuses more.

:func:`describe_content` names what some bytes are when they are not an image ("text", "PDF
document"), so an error can say what a file is without ever printing what it holds (the first bytes
of ``/etc/passwd`` or ``/proc/self/environ`` are nobody's business in a log).
"""

from __future__ import annotations

import codecs
import os
import stat

from imagefunnel.errors import ImageFileError, ImageTooLarge

__all__ = ["MAX_IMAGE_BYTES", "describe_content", "file_kind", "read_image_file"]

MAX_IMAGE_BYTES = 40_000_000
_CHUNK = 1 << 20

# Signatures of common files that are not images, so a refusal can name them. Order matters only
# where one is a prefix of another.
_NON_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF document"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"PK\x05\x06", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\x1aE\xdf\xa3", "Matroska/WebM video"),
    (b"OggS", "Ogg media"),
    (b"ID3", "MP3 audio"),
    (b"fLaC", "FLAC audio"),
)
_TEXT_CONTROL = frozenset(b"\t\n\r\f\x1b")
_SNIFF_BYTES = 4096


def file_kind(mode: int) -> str:
    """What an ``st_mode`` that is not a regular file names: "a directory", "a named pipe (FIFO)"..."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse_unless_regular(mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = file_kind(mode)
        raise ImageFileError(f"cannot read: {kind}" if kind.startswith("not") else f"cannot read: is {kind}")


def _open_flags() -> int:
    # O_NONBLOCK: opening a FIFO that slipped past the stat check returns at once instead of waiting
    # for a writer. O_NOCTTY: a terminal device never becomes our controlling terminal.
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    return flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def _read_bounded(fd: int, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes: one more than allowed is enough to know the file is too big."""
    chunks: list[bytes] = []
    left = max_bytes + 1
    while left > 0:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _limit(size: int, max_bytes: int, *, at_least: bool = False) -> ImageTooLarge:
    more = "more than " if at_least else ""
    return ImageTooLarge(f"file is {more}{size:,} bytes, over the {max_bytes:,} byte limit")


def read_image_file(path: str | os.PathLike[str], *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them.

    Raises :class:`ImageFileError` for a path that is missing, unreadable, a directory, a FIFO,
    a device or a socket (never opening those), and :class:`ImageTooLarge` over ``max_bytes``.
    Messages are one line and do not repeat the path: callers say which file they were reading.
    """
    name = os.fspath(path)
    if "\x00" in name:
        raise ImageFileError("cannot read: the path contains a NUL byte")
    try:
        info = os.stat(name)
        _refuse_unless_regular(info.st_mode)
        if info.st_size > max_bytes:
            raise _limit(info.st_size, max_bytes)
        fd = os.open(name, _open_flags())
    except OSError as exc:
        raise ImageFileError(f"cannot read: {exc.strerror or exc}") from exc
    try:
        _refuse_unless_regular(os.fstat(fd).st_mode)
        data = _read_bounded(fd, max_bytes)
    except OSError as exc:
        raise ImageFileError(f"cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # the file grew, or (procfs) claimed a size of 0
        raise _limit(max_bytes, max_bytes, at_least=True)
    return data


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 (a multi-byte character cut at the end of ``head`` is fine) without control bytes."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(ord(ch) >= 0x20 or ord(ch) in _TEXT_CONTROL for ch in text)


def describe_content(data: bytes) -> str:
    """What ``data`` looks like, in a few words, for bytes that are not a supported image.

    Never echoes the bytes themselves: "empty file", "text", "HTML document", "PDF document",
    "ZIP archive", ..., or "unknown binary data".
    """
    if not data:
        return "empty file"
    for magic, name in _NON_IMAGE_MAGIC:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp":  # ISO media whose brand is not an image one (imaging checks those first)
        return "MP4/QuickTime video or other ISO media"
    head = data[:_SNIFF_BYTES]
    if not _looks_like_text(head.removeprefix(codecs.BOM_UTF8)):
        return "unknown binary data"
    start = head.lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "HTML document"
    return "text"
