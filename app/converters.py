"""URL converters and query arguments shared by the blueprints."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.routing import IntegerConverter, Map

MAX_ID = 2**31 - 1  # the largest value an INTEGER primary key holds on PostgreSQL
MAX_PAGE = 100_000


class IdConverter(IntegerConverter):
    """A database id: a URL with an id no row can have is a 404, never a failed query."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


def page_arg() -> int:
    """The ``page`` query argument, clamped to a page that can exist."""
    return min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)


def init_app(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
