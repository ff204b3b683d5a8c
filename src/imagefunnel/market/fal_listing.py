"""fal's request listing (``GET /v1/models/requests/by-endpoint``), as the fal emulator serves it.

What the platform API documents, and the choices made where it leaves room:

* ``endpoint_id`` (required): one or more, comma-separated or repeated, at most 50;
* only requests that have **ended** are listed (done, failed, or cancelled), since the list is
  sorted by end time: a request still queued or running is not there yet;
* ``start``/``end`` (ISO 8601) bound ``ended_at``: ``start <= ended_at < end``; ``start``
  defaults to 24 h ago (90 days when ``request_id`` is given), ``end`` to no bound;
* ``sort_by``: ``ended_at`` (default) or ``duration``, largest first (newest ended first);
* ``status``: ``success`` (HTTP 200 outputs), ``error`` (the app failed: 500) or ``user_error``
  (cancelled by the client: 400);
* ``limit`` 1-100 (default 50); ``cursor`` is opaque to clients: here base64 of the page number,
  the first page being 1 (so the second is ``Mg==``); a bad value of either answers 422;
* ``expand=payloads`` adds ``json_input`` (the body as submitted) and ``json_output`` (the
  result, or the error body).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imagefunnel.market._shared import iso

__all__ = ["ListQuery", "ListedRequest", "decode_cursor", "encode_cursor", "page_of", "parse_query"]

DEFAULT_WINDOW = timedelta(hours=24)
REQUEST_ID_WINDOW = timedelta(days=90)  # the default look-back when one request is asked for by id
MAX_ENDPOINTS = 50

_STATUS_CODES: dict[str, range] = {
    "success": range(200, 300),
    "error": range(500, 600),
    "user_error": range(400, 500),
}


class ListQuery(BaseModel):
    """The listing's query parameters, validated as fal's API validates them (422 otherwise)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    endpoint_id: str = Field(min_length=1)
    start: datetime | None = None
    end: datetime | None = None
    status: Literal["success", "error", "user_error"] | None = None
    request_id: str | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = None
    expand: Literal["payloads"] | None = None
    sort_by: Literal["ended_at", "duration"] = "ended_at"

    @field_validator("endpoint_id")
    @classmethod
    def _endpoints(cls, value: str) -> str:
        parts = value.split(",")
        if any(not part.strip() for part in parts) or len(parts) > MAX_ENDPOINTS:
            raise ValueError(f"expected 1 to {MAX_ENDPOINTS} comma-separated endpoint ids")
        return value

    @property
    def endpoint_ids(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.endpoint_id.split(","))

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamp needs a time zone (e.g. 2025-01-01T00:00:00Z)")
        return value


@dataclass(frozen=True, slots=True)
class ListedRequest:
    """One ended request, in wall-clock time, before it is written out."""

    request_id: str
    endpoint_id: str
    sent_at: datetime
    started_at: datetime | None
    ended_at: datetime
    status_code: int
    duration_s: float
    json_input: dict[str, object]
    json_output: dict[str, object] | None

    def body(self, *, payloads: bool) -> dict[str, object]:
        item: dict[str, object] = {
            "request_id": self.request_id,
            "endpoint_id": self.endpoint_id,
            "sent_at": iso(self.sent_at),
            "started_at": iso(self.started_at) if self.started_at is not None else None,
            "ended_at": iso(self.ended_at),
            "status_code": self.status_code,
            "duration": round(self.duration_s, 6),
        }
        if payloads:
            item |= {"json_input": self.json_input, "json_output": self.json_output}
        return item


def parse_query(params: dict[str, str]) -> ListQuery | list[dict[str, object]]:
    """The validated query, or fal-style 422 details (``loc``/``msg``/``type`` each). A repeated
    ``endpoint_id`` comes joined by commas."""
    try:
        query = ListQuery.model_validate(params)
    except ValidationError as exc:
        return [
            {"loc": ["query", *map(str, err["loc"])], "msg": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    if query.cursor is not None and decode_cursor(query.cursor) is None:
        return [{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}]
    return query


def encode_cursor(page: int) -> str:
    return base64.b64encode(str(page).encode("ascii")).decode("ascii")


def decode_cursor(cursor: str) -> int | None:
    """The page number a cursor names (1 is the first page); ``None`` if it names none."""
    try:
        raw = base64.b64decode(cursor, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(raw) if raw.isdigit() and int(raw) >= 1 else None


def page_of(
    listed: list[ListedRequest], query: ListQuery, *, now: datetime
) -> tuple[list[ListedRequest], str | None]:
    """The page of ``listed`` the query asks for, filtered and sorted, and the next page's cursor."""
    window = REQUEST_ID_WINDOW if query.request_id is not None else DEFAULT_WINDOW
    start = query.start if query.start is not None else now - window
    endpoints = query.endpoint_ids
    wanted = [
        item
        for item in listed
        if item.endpoint_id in endpoints
        and start <= item.ended_at
        and (query.end is None or item.ended_at < query.end)
        and (query.status is None or item.status_code in _STATUS_CODES[query.status])
        and (query.request_id is None or item.request_id == query.request_id)
    ]
    if query.sort_by == "duration":
        wanted.sort(key=lambda item: (item.duration_s, item.ended_at), reverse=True)
    else:
        wanted.sort(key=lambda item: item.ended_at, reverse=True)
    page = decode_cursor(query.cursor) if query.cursor is not None else 1
    first = ((page or 1) - 1) * query.limit
    rows = wanted[first : first + query.limit]
    more = first + query.limit < len(wanted)
    return rows, encode_cursor((page or 1) + 1) if more else None
