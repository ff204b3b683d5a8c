"""Hostile bodies and uploads: every one a 4xx with a JSON error that names the problem."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import pytest
from PIL import Image
from service_fixtures import Service, spec


@pytest.fixture
def api(make_service) -> Service:  # type: ignore[no-untyped-def]
    return make_service(
        workers=0, max_body_bytes=50_000, max_upload_bytes=2_000_000, max_image_pixels=4_000_000
    )


def _png(width: int = 64, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb_png(side: int = 100_000) -> bytes:
    """A tiny PNG whose header declares side x side pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _error(answer, status: int, code: str, *, mentions: str = "") -> None:  # type: ignore[no-untyped-def]
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    assert mentions in error["message"]


def test_spec_bodies(api: Service) -> None:
    post = api.client.post
    _error(
        post("/v1/jobs", content=b"{nope", headers={**api.a, "content-type": "application/json"}),
        400,
        "invalid_json",
    )
    deep = b"[" * 100_00 + b"]" * 100_00
    _error(
        post("/v1/jobs", content=deep, headers={**api.a, "content-type": "application/json"}), 400, "too_deep"
    )
    _error(
        post("/v1/jobs", json={**spec(), "deliver": 0}, headers=api.a),
        422,
        "invalid_spec",
        mentions="deliver",
    )
    _error(
        post("/v1/jobs", json={**spec(), "references": ["/etc/passwd"]}, headers=api.a),
        422,
        "invalid_spec",
        mentions="references",
    )
    _error(post("/v1/jobs", json=[1, 2], headers=api.a), 422, "invalid_spec")
    laughs = b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\nprompts: [p]\ndeliver: 1\nbudget_usd: 1\n"
    _error(
        post("/v1/jobs", content=laughs, headers={**api.a, "content-type": "application/yaml"}),
        422,
        "invalid_spec",
        mentions="aliases",
    )
    nested = ("prompts: [p]\ndeliver: 1\nbudget_usd: 1\nx: " + "[" * 50 + "]" * 50).encode()
    _error(
        post("/v1/jobs", content=nested, headers={**api.a, "content-type": "application/yaml"}),
        400,
        "too_deep",
    )
    _error(
        post("/v1/jobs", content=b"\xff\xfe", headers={**api.a, "content-type": "application/yaml"}),
        400,
        "invalid_encoding",
    )
    _error(
        post("/v1/jobs", content=b"x", headers={**api.a, "content-type": "image/png"}),
        415,
        "unsupported_media_type",
    )
    yaml_ok = b"name: from yaml\nuse_case: generic\nprompts: [a vase]\ndeliver: 1\nbudget_usd: 0.5\n"
    assert (
        post("/v1/jobs", content=yaml_ok, headers={**api.a, "content-type": "application/yaml"}).status_code
        == 201
    )


def test_body_limits_apply_before_parsing_with_or_without_content_length(api: Service) -> None:
    big = b'{"prompts": ["' + b"a" * 60_000 + b'"]}'
    _error(
        api.client.post("/v1/jobs", content=big, headers={**api.a, "content-type": "application/json"}),
        413,
        "body_too_large",
    )

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 5_000

    chunked = api.client.post(
        "/v1/jobs", content=chunks(), headers={**api.a, "content-type": "application/json"}
    )
    _error(chunked, 413, "body_too_large")


def test_uploads(api: Service) -> None:
    def upload(*files: tuple[str, bytes]):  # type: ignore[no-untyped-def]
        return api.client.post("/v1/evaluations", files=[("images", f) for f in files], headers=api.a)

    _error(upload(("notes.txt", b"hello, I am not an image")), 422, "invalid_image", mentions="notes.txt")
    _error(upload(("bomb.png", _bomb_png())), 413, "image_too_large", mentions="bomb.png")
    _error(upload(("cut.png", _png()[:-20])), 422, "invalid_image", mentions="cut.png")
    _error(
        upload(("x.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")), 422, "invalid_image", mentions="SVG"
    )
    # One over the images allowed is named; past the parser's file count (images + references) too.
    _error(upload(*[(f"{i}.png", _png()) for i in range(65)]), 413, "too_many_images")
    _error(upload(*[(f"{i}.png", _png()) for i in range(73)]), 400, "http_error")  # over max_files
    malformed = api.client.post(
        "/v1/evaluations",
        content=b'--xyz\r\nContent-Disposition: form-data; name="images"\r\n\r\nunterminated',
        headers={**api.a, "content-type": "multipart/form-data; boundary=xyz"},
    )
    assert 400 <= malformed.status_code < 500 and "error" in malformed.json()
    no_boundary = api.client.post(
        "/v1/evaluations", content=b"abc", headers={**api.a, "content-type": "multipart/form-data"}
    )
    assert 400 <= no_boundary.status_code < 500 and "error" in no_boundary.json()
    _error(
        api.client.post("/v1/evaluations", json={"images": [{"name": "a", "data": "%%%"}]}, headers=api.a),
        422,
        "invalid_image",
    )
    _error(api.client.post("/v1/evaluations", json={"images": []}, headers=api.a), 422, "no_images")
    _error(
        api.client.post(
            "/v1/evaluations", json={"images": [{"data": ""}], "use_case": "cats"}, headers=api.a
        ),
        422,
        "invalid_use_case",
    )
    too_big = api.client.post(
        "/v1/evaluations", files=[("images", ("big.png", b"\x89PNG" + b"0" * 2_100_000))], headers=api.a
    )
    _error(too_big, 413, "body_too_large")
