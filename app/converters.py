"""URL converters and query arguments shared by the blueprints."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1  # the largest value an INTEGER primary key holds on PostgreSQL
MAX_PAGE = 100_000


class IdConverter(IntegerConverter):
    """A database id. An id no row can have (0, or past what an INTEGER key holds) reaches
    the view as 0, which finds nothing: a 404, never a failed query. Refusing it here
    instead would make Werkzeug answer 405 whenever another method's rule shares the
    path, since it checks methods before converters."""

    def to_python(self, value: str) -> int:
        number = int(value)
        return number if 1 <= number <= MAX_ID else 0


def page_arg() -> int:
    """The ``page`` query argument, clamped to a page that can exist."""
    return min(max(request.args.get("page", 1, type=int), 1), MAX_PAGE)


def init_app(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
