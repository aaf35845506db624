"""The widget's state reader keeps its contract: on generated products, notes, end users,
reads, reactions, acknowledgements and notes sent by agents it answers exactly as the
plain reference reader does, and the notes endpoint says what the reference's answer
implies, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from announcements import catalogue, inbox, live, reads, serialisation, user_state, versions
from announcements.models import (
    Acknowledgement,
    AgentSend,
    EndUser,
    Note,
    Product,
    Reaction,
    ReadReceipt,
    utcnow,
)
from app.database import widget_engine
from tests.factories import make_note, make_product
from tests.test_widget_api import Widget

SEEDS = range(30)
VERSIONS = ["0.9.0", "1.0.0", "1.2.0-rc.1", "1.2.0", "1.10.0", "2.0.0"]
PLANS = ["free", "pro", "team"]
# External ids from a small pool, so that users of different products share them.
EXTERNAL_IDS = ["user-1", "user-2", 'the "3rd", of 1,2', "ünïcødé 👤", "back\\slash", "7"]
# Any text a database may hold as a reaction, not only the widget's three: the JSON the
# widget sends must carry it as it is.
REACTION_TEXTS = [*reads.REACTIONS, '"', "\\", 'a","b', "1:2,3", "line\nbreak", "é\u2028👍"]
STATUSES = ["published"] * 5 + ["draft", "scheduled", "archived", "internal", "expired"]


@dataclass(frozen=True)
class World:
    """One generated product and the external ids it has end users for."""

    product: Product
    external_ids: list[str]


def _audience(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.6:
        return None
    plans = rng.sample(PLANS, rng.randint(1, 2))
    return {"match": "all", "conditions": [{"attribute": "plan", "op": "in", "value": plans}]}


def _note(session: Session, product: Product, rng: random.Random, now: datetime) -> Note:
    """A note of a random status, version and audience, published some days ago."""
    status = rng.choice(STATUSES)
    published = now - timedelta(days=rng.randint(2, 60), minutes=rng.randint(0, 1000))
    fields: dict[str, Any] = {
        "version": rng.choice(VERSIONS),
        "is_important": rng.random() < 0.2,
        "audience": _audience(rng),
        "title": f'Note {rng.randrange(10**6)} "quoted" \\ ünï',
        "requires_acknowledgement": rng.random() < 0.3,
    }
    if status == "internal":
        fields["is_internal"] = True
    if status == "expired":
        fields["expires_at"] = published + timedelta(days=1)
    elif rng.random() < 0.2:
        fields["expires_at"] = now + timedelta(days=3)
    made = "published" if status in ("internal", "expired") else status
    when = now if status == "scheduled" else published
    return make_note(session, product, status=made, now=when, **fields)


def generate(session: Session, rng: random.Random, now: datetime) -> World:
    """A product with notes of every state, end users, their reads and reactions.

    Reads and reactions are written as stored rows, as any path might have left them:
    reads of notes since archived, reactions of any text, a reaction without a read,
    acknowledgements of any note, sends read and unread, twice of one note.
    """
    product = make_product(session, grace_releases=rng.randint(1, 3))
    notes = [_note(session, product, rng, now) for _ in range(rng.randint(0, 9))]
    external_ids = rng.sample(EXTERNAL_IDS, rng.randint(0, len(EXTERNAL_IDS)))
    for external_id in external_ids:
        plan = rng.choice([None, *PLANS])
        user_id = session.execute(
            insert(EndUser)
            .values(
                product_id=product.id,
                external_id=external_id,
                attributes={} if plan is None else {"plan": plan, "name": 'ü "q"'},
                locale=rng.choice([None, "en", "pt-BR"]),
                app_version=rng.choice([None, *VERSIONS]),
                first_seen_at=now - timedelta(days=rng.randint(1, 70), seconds=rng.random()),
                last_seen_at=now - timedelta(minutes=rng.randint(0, 180)),
            )
            .returning(EndUser.id)
        ).scalar_one()
        read = rng.sample(notes, rng.randint(0, len(notes)))
        for note in read:
            session.add(ReadReceipt(end_user_id=user_id, note_id=note.id, channel="widget"))
        for note in rng.sample(notes, rng.randint(0, len(notes))):
            if note in read or rng.random() < 0.2:
                reaction = rng.choice(REACTION_TEXTS)
                session.add(Reaction(end_user_id=user_id, note_id=note.id, reaction=reaction))
        for note in rng.sample(notes, rng.randint(0, len(notes))):
            session.add(Acknowledgement(end_user_id=user_id, note_id=note.id))
        for note in rng.sample(notes, rng.randint(0, len(notes))):
            for _ in range(rng.randint(1, 2)):
                read_at = rng.choice([None, now])
                session.add(
                    AgentSend(
                        product_id=product.id,
                        note_id=note.id,
                        end_user_id=user_id,
                        agent="Ann",
                        via="console",
                        read_at=read_at,
                    )
                )
    session.commit()
    return World(product, external_ids)


def states(
    connection: Connection, reader: user_state.StateReader, world: World
) -> dict[str | None, tuple[int | None, user_state.EndUserState | None]]:
    """What ``reader`` answers for each user of the world, an unknown user and no user."""
    asked: list[str | None] = [*world.external_ids, "nobody", None]
    return {
        external_id: reader.fetch_state(connection, world.product.widget_key, external_id)
        for external_id in asked
    }


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "reader", [user_state.DriverStateReader(), user_state.CoreStateReader()], ids=["driver", "core"]
)
def test_the_one_query_readers_answer_as_the_reference(
    session: Session, reader: user_state.StateReader, seed: int
) -> None:
    rng = random.Random(seed)
    now = utcnow()
    worlds = [generate(session, rng, now) for _ in range(2)]
    reference = user_state.ReferenceStateReader()
    with widget_engine().connect() as connection:
        for world in worlds:
            expected = states(connection, reference, world)
            assert states(connection, reader, world) == expected
            assert expected[None] == (world.product.catalogue_stamp, None)
        assert reader.fetch_state(connection, "wk_none", "user-1") == (None, None)
        assert reference.fetch_state(connection, "wk_none", "user-1") == (None, None)


def expected_body(
    session: Session, app: Flask, world: World, external_id: str, version: str | None, limit: int
) -> dict[str, Any]:
    """The notes endpoint's answer as the reference reader's state implies it."""
    with widget_engine().connect() as connection:
        stamp, state = user_state.ReferenceStateReader().fetch_state(
            connection, world.product.widget_key, external_id
        )
        shown = catalogue.load(connection, world.product.widget_key, app.config["BASE_URL"])
    assert state is not None and shown is not None and stamp == shown.stamp
    now = utcnow()
    page = inbox.inbox(
        shown,
        state,
        attributes=state.attributes,
        app_version=None if version is None else versions.parse(version),
        now=now,
        limit=limit,
        after=None,
    )
    product = world.product
    notes = []
    for entry, read, reaction in page.entries:
        note = session.get_one(Note, entry.id)
        assert note.published_at is not None
        notes.append(
            {
                "id": note.id,
                "version": note.version,
                "title": note.title,
                "html": note.body_html,
                "category": note.category.value,
                "category_label": note.category.label,
                "published_at": serialisation.iso(note.published_at),
                "url": serialisation.note_url(
                    app.config["BASE_URL"], product.slug, note.version, note.id
                ),
                "important": note.is_important,
                "requires_acknowledgement": note.requires_acknowledgement,
                "locale": product.default_locale,
                "read": read,
                "reaction": reaction,
                "acknowledged": entry.id in page.acknowledged,
                "pinned": entry.id in page.pinned,
            }
        )
    return {
        "product": {"name": product.name, "accent_color": product.accent_color},
        "unread_count": page.unread_count,
        "notes": notes,
        "next_cursor": page.next_cursor,
        "events": f"{app.config['LIVE_URL']}/api/v1/widget/{product.widget_key}/events"
        f"?last_event_id={live.event_id(shown, now)}",
    }


@pytest.mark.parametrize("seed", SEEDS[:10])
def test_the_notes_endpoint_says_what_the_reference_implies(
    app: Flask, session: Session, client: FlaskClient, seed: int
) -> None:
    rng = random.Random(seed)
    world = generate(session, rng, utcnow())
    for external_id in [*world.external_ids, "first-visit"]:
        version = rng.choice([None, *VERSIONS])
        limit = rng.randint(1, 12)
        params = {"limit": limit} if version is None else {"limit": limit, "version": version}
        answer = Widget(client, world.product, external_id).notes(**params)
        assert answer.status_code == 200, answer.get_json()
        session.expire_all()
        assert answer.get_json() == expected_body(session, app, world, external_id, version, limit)
