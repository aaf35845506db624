"""A translation published after its note: mail the note, in that language, to the
subscribers who read it and have not read the note.

Publishing a translation changes no one's read state; only when the editor asks
(``translations.save(..., publish=True, announce=True)``) does this queue mail. It goes to each
confirmed subscriber whose fallback chain now picks this translation (a ``fr-CA``
reader gets a new ``fr`` text while the product has no published ``fr-CA`` one), who
wants the note on its own and may see it (preferences, audience and hold-back as when
the note went out, :func:`mailing.wants_news`), and who has not read it (a read receipt
of their end user: opened in the app, or the "Read on the web" link of a mail).

Nobody is told twice: a subscriber gets one such message per note (the outbox holds one
message of a kind per note and subscriber), so a second announce, in this language or
another, queues nothing for them; nor does it go to one whose mail of the note is still
to be sent, which will carry the translation anyway, or went out after this text was
published and so carried it already. Whether it is still owed (the translation still
theirs, the note still unread) is decided again when it is sent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, true
from sqlalchemy.orm import Session

from announcements import mailing, translations
from announcements.models import (
    NoteTranslation,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    TranslationStatus,
)


def announce(session: Session, translation: NoteTranslation, *, now: datetime) -> int:
    """Queue the translation's note for the subscribers who read its language and have
    not read the note; returns how many messages were queued. Runs in the caller's
    transaction."""
    note, tag = translation.note, translation.locale
    product = note.product
    if (
        translation.status is not TranslationStatus.PUBLISHED
        or tag not in translations.product_languages(product)
        or not mailing.is_out(note, now)
    ):
        return 0
    told = _told(session, translation)
    readers = [
        subscriber
        for subscriber in mailing.confirmed_subscribers(session, product.id)
        if subscriber.id not in told
        and translations.shown_text(note, subscriber.locale).locale == tag
        and mailing.wants_news(note, subscriber, now=now)
    ]
    return mailing.queue_for(
        session,
        note,
        mailing.unread_by(session, note, readers),
        OutboxKind.TRANSLATION,
        now=now,
        payload={"locale": tag},
    )


def _told(session: Session, translation: NoteTranslation) -> set[int | None]:
    """The subscribers who had, or will have, the note in this text without this call:
    one announcement of a translation each, and a mail of the note that is still to go
    (it is worded when sent) or went after this text was published."""
    published_at = translation.published_at
    carried: ColumnElement[bool] = (
        OutboxMessage.sent_at >= published_at if published_at is not None else true()
    )
    return set(
        session.scalars(
            select(OutboxMessage.subscriber_id).where(
                OutboxMessage.note_id == translation.note_id,
                or_(
                    OutboxMessage.kind == OutboxKind.TRANSLATION,
                    and_(
                        OutboxMessage.kind == OutboxKind.NOTE,
                        or_(
                            OutboxMessage.status.in_((OutboxStatus.QUEUED, OutboxStatus.SENDING)),
                            and_(OutboxMessage.status == OutboxStatus.SENT, carried),
                        ),
                    ),
                ),
            )
        )
    )
