"""Render the stored HTML of notes and translations again, through today's renderer.

A note's HTML is rendered once, when it is saved, and stored; a change to the renderer
reaches older notes only through :func:`rerender`, which ``flask notes rerender`` and the
migrations that follow a renderer change both call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CursorResult, Row, Select, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from announcements import rendering
from announcements.models import Note, NoteTranslation, Product, move_catalogue_stamps

# Rows read at a time: memory holds this many bodies, whatever the number of notes.
PAGE = 200


@dataclass(frozen=True)
class Failure:
    """A body that could not be rendered again; its stored HTML is left as it was."""

    what: str
    reason: str


@dataclass
class RerenderReport:
    """What a re-render found: bodies checked, bodies whose HTML changed (or would, in a dry
    run), the slugs of the products those belong to, and the bodies that failed."""

    checked: int = 0
    changed: int = 0
    products: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


@dataclass(frozen=True)
class _Body:
    table: type[Note] | type[NoteTranslation]
    id: int
    product_id: int
    label: str
    body_md: str
    body_html: str


def rerender(
    session: Session, *, product: Product | None = None, dry_run: bool = False
) -> RerenderReport:
    """Render every note's and translation's Markdown again (``product``'s only, if given)
    and store the HTML that differs, moving the catalogue stamps of the products whose
    notes changed; a dry run only counts. The caller commits.

    Everything is rendered before anything is written, so a database that takes one writer
    at a time (SQLite) is held only for the writes. A body edited in the meantime keeps the
    HTML its own save rendered.
    """
    report = RerenderReport()
    pending: list[tuple[_Body, str]] = []
    for body in _bodies(session, None if product is None else product.id):
        report.checked += 1
        try:
            html = rendering.render(body.body_md)
        except rendering.TooIntricate:
            reason = f"takes more than {rendering.CPU_SECONDS} s of CPU time to format"
            report.failures.append(Failure(body.label, reason))
            continue
        if html != body.body_html:
            pending.append((body, html))
    changed_products: set[int] = set()
    for body, html in pending:
        if dry_run or _store(session, body, html):
            report.changed += 1
            changed_products.add(body.product_id)
    if changed_products and not dry_run:
        move_catalogue_stamps(session, changed_products)
    if changed_products:
        slugs = select(Product.slug).where(Product.id.in_(changed_products))
        report.products = sorted(session.scalars(slugs))
    return report


def _bodies(session: Session, product_id: int | None) -> Iterator[_Body]:
    """Every note's body, then every translation's, read a page at a time."""
    notes = select(Note.id, Note.product_id, Note.version, Note.body_md, Note.body_html)
    if product_id is not None:
        notes = notes.where(Note.product_id == product_id)
    for row in _pages(session, notes, Note.id):
        label = f"note {row.id} ({row.version})"
        yield _Body(Note, row.id, row.product_id, label, row.body_md, row.body_html)
    translations = select(
        NoteTranslation.id,
        Note.product_id,
        Note.version,
        NoteTranslation.locale,
        NoteTranslation.body_md,
        NoteTranslation.body_html,
    ).join(Note, NoteTranslation.note_id == Note.id)
    if product_id is not None:
        translations = translations.where(Note.product_id == product_id)
    for row in _pages(session, translations, NoteTranslation.id):
        label = f"translation {row.id} ({row.version}, {row.locale})"
        yield _Body(NoteTranslation, row.id, row.product_id, label, row.body_md, row.body_html)


def _pages(
    session: Session, query: Select[*tuple[Any, ...]], key: InstrumentedAttribute[int]
) -> Iterator[Row[*tuple[Any, ...]]]:
    """The rows of ``query`` in order of ``key``, PAGE at a time: no cursor stays open across
    the renders, and the rows already seen are not held."""
    after = 0
    while True:
        rows = session.execute(query.where(key > after).order_by(key).limit(PAGE)).all()
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1].id


def _store(session: Session, body: _Body, html: str) -> bool:
    """Store ``html`` unless the body was edited since it was read (its own save rendered
    it then); True when stored."""
    table = body.table
    stored = session.execute(
        update(table)
        .where(table.id == body.id, table.body_md == body.body_md)
        .values(body_html=html)
    )
    return isinstance(stored, CursorResult) and stored.rowcount > 0
