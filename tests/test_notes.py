"""Writing, publishing, scheduling and archiving notes, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import queries, services
from announcements.errors import InvalidTransition, ValidationFailed
from announcements.models import AuditEvent, Category, Note, NoteStatus, Product, utcnow
from announcements.services import Intent, NoteInput
from tests.factories import make_member, make_note, make_product


def _input(**overrides: object) -> NoteInput:
    values: dict[str, object] = {"version": "2.4.0", "title": "Dark mode", "category": "Added"}
    values.update(overrides)
    return NoteInput(**values)


def test_a_scheduled_note_goes_live_at_its_time_without_anyone_acting(session) -> None:
    product = make_product(session)
    now = utcnow()
    note = services.create_note(
        session,
        product,
        _input(),
        intent=Intent.SCHEDULE,
        publish_at=now + timedelta(hours=2),
        by=None,
        now=now,
    )
    assert note.status_at(now) is NoteStatus.SCHEDULED
    assert note.status_at(now + timedelta(hours=2, seconds=1)) is NoteStatus.PUBLISHED
    later = now + timedelta(hours=3)
    listing = queries.notes_by_version(session, product, now=later, status=NoteStatus.PUBLISHED)
    assert [n.id for g in listing.groups for n in g.notes] == [note.id]


def test_editing_a_published_note_keeps_published_at_and_records_updated_at(session) -> None:
    product = make_product(session)
    then = utcnow() - timedelta(days=3)
    note = make_note(session, product, now=then, title="Exports")
    published_at = note.published_at
    now = utcnow()
    services.update_note(
        session, note, _input(title="Exports to CSV", version="1.0.0"), by=None, now=now
    )
    session.expire_all()
    note = session.get(Note, note.id)
    assert note.published_at == published_at
    assert note.updated_at == now
    assert note.title == "Exports to CSV"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"version": "next"}, "version"),
        ({"category": "Improved"}, "category"),
        ({"body_md": "x" * (100 * 1024 + 1)}, "body_md"),
    ],
)
def test_bad_input_names_the_field_and_saves_nothing(session, overrides, field) -> None:
    product = make_product(session)
    with pytest.raises(ValidationFailed) as caught:
        services.create_note(session, product, _input(**overrides), by=None, now=utcnow())
    assert set(caught.value.errors) == {field}
    session.rollback()
    assert session.scalars(select(Note)).all() == []


def test_a_duplicate_title_within_a_version_is_refused(session) -> None:
    product = make_product(session)
    make_note(session, product, version="2.4.0", title="Dark mode")
    with pytest.raises(ValidationFailed) as caught:
        services.create_note(session, product, _input(title="dark MODE"), by=None, now=utcnow())
    assert caught.value.errors == {"title": "Version 2.4.0 already has a note with this title."}
    session.rollback()
    # The same title in another version, or another product, is fine.
    services.create_note(session, product, _input(version="2.5.0"), by=None, now=utcnow())
    services.create_note(session, make_product(session), _input(), by=None, now=utcnow())
    titled = select(Note.version).where(Note.title == "Dark mode").order_by(Note.id)
    assert session.scalars(titled).all() == ["2.4.0", "2.5.0", "2.4.0"]


def test_scheduling_in_the_past_is_refused(session) -> None:
    product = make_product(session)
    now = utcnow()
    with pytest.raises(ValidationFailed) as caught:
        services.create_note(
            session,
            product,
            _input(),
            intent=Intent.SCHEDULE,
            publish_at=now - timedelta(minutes=1),
            by=None,
            now=now,
        )
    assert list(caught.value.errors) == ["publish_at"]
    assert "passed" in caught.value.errors["publish_at"]


def test_transitions_follow_the_lifecycle(session) -> None:
    product = make_product(session)
    now = utcnow()
    draft = make_note(session, product, status="draft", now=now)
    services.publish(session, draft, by=None, now=now)
    assert draft.status_at(now) is NoteStatus.PUBLISHED
    with pytest.raises(InvalidTransition):
        services.publish(session, draft, by=None, now=now)
    with pytest.raises(InvalidTransition):
        services.delete_draft(session, draft, by=None, now=now)
    services.archive(session, draft, by=None, now=now)
    assert draft.status_at(now) is NoteStatus.ARCHIVED
    with pytest.raises(InvalidTransition):
        services.update_note(session, draft, _input(), by=None, now=now)
    services.restore(session, draft, by=None, now=now)
    assert draft.status_at(now) is NoteStatus.PUBLISHED


def test_every_change_is_in_the_audit_log_with_who_and_which_note(session) -> None:
    editor = make_member(session, "ed@example.com")
    product = make_product(session, owner=editor)
    now = utcnow()
    note = services.create_note(session, product, _input(), by=editor, now=now)
    services.update_note(session, note, _input(body_md="More detail."), by=editor, now=now)
    services.publish(session, note, by=editor, now=now)
    services.archive(session, note, by=editor, now=now)
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.note_id == note.id).order_by(AuditEvent.id)
    ).all()
    assert [e.action for e in events] == [
        "note.created",
        "note.updated",
        "note.published",
        "note.archived",
    ]
    assert all(e.actor_id == editor.id for e in events)
    assert "Edited body" in events[1].summary


def test_notes_list_is_grouped_by_version_in_version_order(session) -> None:
    product = make_product(session)
    for version in ["2.9.1", "2.10.0", "2.10.0-rc.1", "2.10.0-x.7.z.92", "1.0.0"]:
        make_note(session, product, version=version)
    make_note(session, product, version="2.10.0", category="Fixed", title="A fix")
    listing = queries.notes_by_version(session, product, now=utcnow())
    assert [g.version for g in listing.groups] == [
        "2.10.0",
        "2.10.0-x.7.z.92",  # SemVer: after rc, as "x" is after "rc", and before the release
        "2.10.0-rc.1",
        "2.9.1",
        "1.0.0",
    ]
    assert [n.category for n in listing.groups[0].notes] == [Category.ADDED, Category.FIXED]


def test_notes_list_filters_and_searches(session) -> None:
    product = make_product(session)
    make_note(session, product, title="Funnels report", body_md="See where people drop off")
    make_note(session, product, title="Faster search", category="Changed", status="draft")
    make_note(session, product, title="100% less flicker", category="Fixed")
    now = utcnow()

    def titles(**kwargs: object) -> list[str]:
        listing = queries.notes_by_version(session, product, now=now, **kwargs)
        return sorted(n.title for g in listing.groups for n in g.notes)

    assert titles(text="DROP OFF") == ["Funnels report"]
    assert titles(text="100%") == ["100% less flicker"]
    assert titles(text="%") == ["100% less flicker"]
    assert titles(status=NoteStatus.DRAFT) == ["Faster search"]
    assert titles(category=Category.FIXED) == ["100% less flicker"]


def test_rendered_html_is_stored_when_the_note_is_saved(session) -> None:
    product = make_product(session)
    note = make_note(session, product, body_md="Hello <script>alert(1)</script>**world**")
    assert note.body_html == "<p>Hello alert(1)<strong>world</strong></p>"


def test_a_duplicate_title_is_found_whatever_the_case_in_any_script(session) -> None:
    product = make_product(session)
    make_note(session, product, version="2.4.0", title="Éclair for Straße")
    with pytest.raises(ValidationFailed) as caught:
        services.create_note(
            session, product, _input(title="  ÉCLAIR FOR STRASSE "), by=None, now=utcnow()
        )
    assert caught.value.errors == {"title": "Version 2.4.0 already has a note with this title."}


def _a_rival_writes_first(monkeypatch, session, product, title: str) -> None:
    """Commit a note titled ``title`` from another session the moment the duplicate check
    of ``session`` has found nothing, as a parallel request would. (Not as the flush
    starts: the flush begins by moving the product's stamp, which a rival then waits for.)
    """
    check = services._validate_note

    def check_then_rival(*args: Any, **kwargs: Any) -> None:
        check(*args, **kwargs)
        monkeypatch.setattr(services, "_validate_note", check)
        with Session(session.get_bind()) as other:
            services.create_note(
                other, other.get(Product, product.id), _input(title=title), by=None, now=utcnow()
            )

    monkeypatch.setattr(services, "_validate_note", check_then_rival)


def test_a_duplicate_written_after_the_check_gets_the_same_error(session, monkeypatch) -> None:
    product = make_product(session)
    _a_rival_writes_first(monkeypatch, session, product, "DARK MODE")
    with pytest.raises(ValidationFailed) as caught:
        services.create_note(session, product, _input(), by=None, now=utcnow())
    assert caught.value.errors == {"title": "Version 2.4.0 already has a note with this title."}
    assert session.scalars(select(Note.title)).all() == ["DARK MODE"]


def test_an_edit_into_a_duplicate_written_after_the_check_gets_the_same_error(
    session, monkeypatch
) -> None:
    product = make_product(session)
    note = make_note(session, product, version="2.4.0", title="Exports")
    _a_rival_writes_first(monkeypatch, session, product, "Dark mode")
    with pytest.raises(ValidationFailed) as caught:
        services.update_note(session, note, _input(), by=None, now=utcnow())
    assert caught.value.errors == {"title": "Version 2.4.0 already has a note with this title."}
    session.expire_all()
    assert sorted(session.scalars(select(Note.title))) == ["Dark mode", "Exports"]


def test_restoring_a_note_whose_title_was_taken_meanwhile_is_refused(session) -> None:
    product = make_product(session)
    now = utcnow()
    old = make_note(session, product, version="2.4.0", title="Dark mode")
    services.archive(session, old, by=None, now=now)
    make_note(session, product, version="2.4.0", title="Dark Mode")  # archived ones are free
    with pytest.raises(InvalidTransition, match="already has a note with this title"):
        services.restore(session, old, by=None, now=now)
    session.expire_all()
    assert session.get(Note, old.id).status_at(now) is NoteStatus.ARCHIVED
