"""The app the benchmark serves: Tidings as configured by the environment, plus a bare
endpoint returning constant JSON, so both run under the same server and middleware."""

from __future__ import annotations

from app import create_app

app = create_app()


@app.get("/bench/bare")
def bare() -> dict[str, object]:
    """The baseline: Flask's own cost for a JSON answer, with no database."""
    return {"unread_count": 0, "notes": [], "next_cursor": None}
