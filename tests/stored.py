"""What the database holds as text, for the tests that look for a trace of someone in it
(an erased user, a client's address): every text, JSON and binary column of every table
the models declare, found from their metadata rather than a list, so a table added later
is read too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, String, select
from sqlalchemy.orm import Session

from announcements.models import Base


def _textual(column: Column[Any]) -> bool:
    kind = column.type
    return isinstance(kind, String | JSON | LargeBinary) or isinstance(
        getattr(kind, "impl", None), String
    )


def text_columns() -> set[str]:
    """Every column the walk reads, as ``table.column``."""
    return {
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if _textual(column)
    }


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def stored_texts(session: Session) -> Iterator[tuple[str, str, str]]:
    """(table, column, value as text) for every value the walk reads that is not null."""
    session.expire_all()
    for table in Base.metadata.sorted_tables:
        columns = [column for column in table.columns if _textual(column)]
        if not columns:
            continue
        for row in session.execute(select(*columns)):
            for column, value in zip(columns, row, strict=True):
                if value is not None:
                    yield table.name, column.name, _text(value)
