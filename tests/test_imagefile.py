"""Reading user-named image files: pipes and devices are never opened, reads are bounded."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import imagefunnel.imagefile
import imagefunnel.market
from imagefunnel.errors import ImageDecodeError, ImageFileError, ImageTooLarge
from imagefunnel.imaging import decode_image, describe_content, read_image_file

PORTRAIT = Path(imagefunnel.market.__file__).parent / "assets" / "portraits" / "obama_1.jpg"
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes and /dev")


def within(seconds: float, call: Callable[[], object], *, unblock: Path | None = None) -> BaseException:
    """Run ``call`` in a thread and return what it raised; fail (not hang) if it blocks.

    A reader blocked opening a FIFO is released by opening the FIFO for writing."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # the test inspects whatever was raised
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            os.close(os.open(unblock, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"still blocked after {seconds} s")
    assert raised, "expected an error, got none"
    return raised[0]


def test_reads_a_regular_file() -> None:
    assert read_image_file(PORTRAIT) == PORTRAIT.read_bytes()
    assert decode_image(read_image_file(str(PORTRAIT))).format == "JPEG"


@posix_only
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    error = within(30, lambda: read_image_file(fifo), unblock=fifo)
    assert isinstance(error, ImageFileError)
    assert str(error) == "cannot read: is a named pipe (FIFO)"


@posix_only
def test_a_fifo_swapped_in_after_the_stat_is_caught_by_fstat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    regular = os.stat(PORTRAIT)
    real_stat = os.stat
    # The path looks regular to the first check, as if it were replaced by a pipe just after it.
    monkeypatch.setattr(
        imagefunnel.imagefile.os, "stat", lambda p, *a, **k: regular if p == str(fifo) else real_stat(p)
    )
    error = within(30, lambda: read_image_file(fifo), unblock=fifo)
    assert isinstance(error, ImageFileError)
    assert "named pipe" in str(error)


@posix_only
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused_not_read_until_memory_runs_out(device: str, tmp_path: Path) -> None:
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    link = tmp_path / "innocent.png"
    link.symlink_to(device)
    for path in (Path(device), link):
        error = within(30, lambda p=path: read_image_file(p))  # type: ignore[misc]
        assert isinstance(error, ImageFileError)
        assert str(error) == "cannot read: is a character device"


@posix_only
def test_a_file_that_claims_size_zero_is_still_bounded() -> None:
    # procfs files report st_size 0 whatever they hold; the read stops one byte past the limit.
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no procfs")
    with pytest.raises(ImageTooLarge, match="more than 64 bytes, over the 64 byte limit"):
        read_image_file(maps, max_bytes=64)


def test_size_limit_is_checked_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\x00" * 1001)
    with pytest.raises(ImageTooLarge, match="1,001 bytes, over the 1,000 byte limit"):
        read_image_file(big, max_bytes=1000)
    assert len(read_image_file(big, max_bytes=1001)) == 1001


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jpg", "cannot read: No such file or directory"),
        (lambda d: d, "cannot read: is a directory"),
        (lambda d: Path(str(d / "a") + "\x00b.jpg"), "cannot read: the path contains a NUL byte"),
    ],
)
def test_unusable_paths_are_one_line_image_file_errors(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    with pytest.raises(ImageFileError) as info:
        read_image_file(make(tmp_path))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty file"),
        (b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n", "text"),
        ("caf\u00e9 notes \u2014 \u00e0 faire\n".encode() * 500, "text"),
        (b"  <!DOCTYPE html><html><body>hi</body></html>", "HTML document"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF document"),
        (b"PK\x03\x04\x14\x00\x00\x00secret.txt", "ZIP archive"),
        (b"\x7fELF\x02\x01\x01\x00", "ELF executable"),
        (b"HOME=/root\x00API_KEY=hunter2\x00", "unknown binary data"),
        (bytes(range(256)), "unknown binary data"),
    ],
)
def test_non_images_are_named_by_kind_never_by_content(data: bytes, kind: str) -> None:
    assert describe_content(data) == kind
    if data:
        with pytest.raises(ImageDecodeError) as info:
            decode_image(data)
        assert str(info.value) == f"not an image ({kind})"
        for secret in (b"root", b"hunter2", b"secret", b"PDF-1.7"):
            assert secret.decode() not in str(info.value)
