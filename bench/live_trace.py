"""gunicorn settings for ``live_bench.py --trace-memory``: tracemalloc in the worker, and,
when the bench asks, what the memory allocated since its first question is made of.

The bench asks by creating ``$TIDINGS_TRACE_FILE.ask``; the worker takes a snapshot and
writes its answer to ``$TIDINGS_TRACE_FILE``: the first time ``ok`` (the snapshot later
ones are compared with), then the bytes allocated since, in all, and the lines of code that
allocated the most of them, as ``<bytes> <blocks> <file>:<line>`` rows, biggest first.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path
from typing import Any

ROWS = 15


def post_fork(server: Any, worker: Any) -> None:
    """Trace from the start of the worker, before it loads the app."""
    tracemalloc.start(1)


def post_worker_init(worker: Any) -> None:
    """Answer the bench's questions from a greenlet of the worker's own."""
    import gevent

    answer = Path(os.environ["TIDINGS_TRACE_FILE"])
    question = answer.with_name(answer.name + ".ask")

    def serve() -> None:
        first = None
        while True:  # ends with the worker
            gevent.sleep(0.2)
            if not question.exists():
                continue
            question.unlink()
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            if first is None:
                first, text = snapshot, "ok\n"
            else:
                rows = snapshot.compare_to(first, "lineno")
                text = f"{sum(row.size_diff for row in rows)}\n" + "".join(
                    f"{row.size_diff} {row.count_diff} {row.traceback[0].filename}:"
                    f"{row.traceback[0].lineno}\n"
                    for row in rows[:ROWS]
                )
            written = answer.with_name(answer.name + ".new")
            written.write_text(text)
            written.rename(answer)

    gevent.spawn(serve)
