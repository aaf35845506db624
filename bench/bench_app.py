"""The app the benchmark serves: Tidings as configured by the environment, plus a bare
endpoint returning constant JSON, so both run under the same server and middleware.

``TIDINGS_BENCH_STATE_READER`` names another state reader (``core`` or ``reference``) for
the widget to use, so the benchmark can serve the same calls with it beside the app's own.
"""

from __future__ import annotations

import os

from announcements import user_state
from app import create_app
from app.api import widget

READERS: dict[str, user_state.StateReader] = {
    "core": user_state.CoreStateReader(),
    "reference": user_state.ReferenceStateReader(),
}

app = create_app()
if reader := os.environ.get("TIDINGS_BENCH_STATE_READER"):
    app.extensions[widget.STATE_READER_KEY] = READERS[reader]


@app.get("/bench/bare")
def bare() -> dict[str, object]:
    """The baseline: Flask's own cost for a JSON answer, with no database."""
    return {"unread_count": 0, "notes": [], "next_cursor": None}
