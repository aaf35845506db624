"""URL converters shared by the blueprints."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

MAX_ID = 2**31 - 1  # the largest value an INTEGER primary key holds on PostgreSQL


class IdConverter(IntegerConverter):
    """A database id: a URL with an id no row can have is a 404, never a failed query."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


def init_app(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
