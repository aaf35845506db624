"""The app's kept widget answers (:mod:`announcements.state_cache`): the Redis they are
kept in, and deleting an end user's once a write to their state commits.

The widget's own writes say whom they wrote for (``app.api.widget``); a write through the
ORM anywhere else (an agent's send, a console's change, an erasure) is seen at the flush
here, and its users' answers are deleted after the commit. A write in Core outside the
widget calls :func:`forget` itself after it commits.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from announcements import state_cache
from announcements.models import Acknowledgement, AgentSend, EndUser, Reaction, ReadReceipt

CACHE_KEY = "tidings.state_cache"
_TOUCHED = "tidings.touched_end_users"
_STATE_ROWS = (EndUser, ReadReceipt, Reaction, Acknowledgement, AgentSend)


def cache() -> state_cache.StateCache | None:
    """The app's kept answers in Redis, made on first use; None without ``REDIS_URL``."""
    if CACHE_KEY not in current_app.extensions:
        url = current_app.config["REDIS_URL"]
        made = state_cache.StateCache.from_url(url) if url else None
        current_app.extensions.setdefault(CACHE_KEY, made)
    kept: state_cache.StateCache | None = current_app.extensions[CACHE_KEY]
    return kept


def forget(product_id: int, external_ids: Iterable[str]) -> None:
    """Delete the answers kept for these end users of the product; call it after the
    write to their state commits."""
    kept = cache()
    if kept is not None:
        kept.forget(product_id, external_ids)


@event.listens_for(Session, "before_flush")
def _note_touched(session: Session, _context: object, _instances: object) -> None:
    """Remember the end users whose state this flush writes."""
    rows = [
        row
        for row in (*session.new, *session.dirty, *session.deleted)
        if isinstance(row, _STATE_ROWS)
    ]
    if not rows:
        return
    touched: set[tuple[int, str]] = session.info.setdefault(_TOUCHED, set())
    with session.no_autoflush:
        for row in rows:
            user = row if isinstance(row, EndUser) else session.get(EndUser, row.end_user_id)
            if user is not None:
                touched.add((user.product_id, user.external_id))


@event.listens_for(Session, "after_commit")
def _forget_touched(session: Session) -> None:
    """Delete the kept answers of the end users the committed transaction wrote for."""
    touched: set[tuple[int, str]] = session.info.pop(_TOUCHED, set())
    if not touched or not has_app_context():
        return
    by_product: dict[int, list[str]] = {}
    for product_id, external_id in touched:
        by_product.setdefault(product_id, []).append(external_id)
    for product_id, external_ids in by_product.items():
        forget(product_id, external_ids)


@event.listens_for(Session, "after_rollback")
def _drop_touched(session: Session) -> None:
    session.info.pop(_TOUCHED, None)
