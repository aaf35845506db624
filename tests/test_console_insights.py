"""The console's Insights pages: the product's page, a note's page, its comments and the
exports; who may see and export what; bad input; the figures they show.

The data is built here, user by user and day by day, counted by the roll-up
(``rollups.rebuild``), and every figure a page shows is checked against a count made here
in plain Python over the rows this module wrote, following the rules in the design.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import lxml.html
import pytest
from babel import dates
from sqlalchemy import select

from announcements import rollups, versions
from announcements.models import (
    AuditEvent,
    EndUser,
    EndUserDay,
    Note,
    Product,
    Reaction,
    ReadReceipt,
    Role,
    utcnow,
)
from app.console import insights as insights_views
from tests.conftest import AuthActions, csrf_token
from tests.factories import add_member, make_member, make_note, make_product
from tests.i18n_helpers import needs_catalogue, said
from tests.test_insights import Many, many_notes, many_segments

# Insights ----------------------------------------------------------------------------------


@dataclass
class User:
    external_id: str
    version: str | None
    plan: str | None
    days: list[date]  # the UTC days the widget saw them, in order
    row: EndUser | None = None


@dataclass
class Built:
    """What this module wrote, to count from."""

    product: Product
    note: Note  # 2.0.0, ten days ago
    later: Note  # 2.1.0, three days ago
    users: list[User]
    reads: dict[str, tuple[str, timedelta]]  # user -> channel, time after publication
    later_reads: list[str]
    reactions: list[tuple[str, str, str | None]]  # user, reaction, comment
    now: datetime
    members: dict[str, str] = field(default_factory=dict)  # role -> e-mail


def seen_at(day: date) -> datetime:
    """When a user was first seen on ``day``: just after midnight, so the roll-up, which
    counts up to half a minute ago, has counted every day before today."""
    return datetime.combine(day, time(0, 0, 1), UTC)


def visit(session, product: Product, user: User) -> None:
    """The user's row and a day row for each day they were seen, each naming the day and
    version before it, as the widget writes them."""
    row = EndUser(
        product_id=product.id,
        external_id=user.external_id,
        app_version=user.version,
        locale="en",
        attributes={"plan": user.plan} if user.plan is not None else {},
        first_seen_at=seen_at(user.days[0]),
        last_seen_at=seen_at(user.days[-1]),
    )
    session.add(row)
    session.flush()
    previous: date | None = None
    for day in user.days:
        session.add(
            EndUserDay(
                end_user_id=row.id,
                day=day,
                product_id=product.id,
                seen_at=seen_at(day),
                app_version=user.version,
                previous_day=previous,
                previous_version=user.version if previous else None,
            )
        )
        previous = day
    user.row = row


@pytest.fixture
def built(session) -> Built:
    """A product with an owner, an editor and a viewer; note 2.0.0 published ten days ago
    and 2.1.0 three days ago; ten end users seen on some of the days since, on several
    versions and plans, and twenty on an older version; reads through several channels;
    reactions with comments."""
    now = utcnow()
    today = now.date()
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner, name="Lumen", slug="lumen")
    members = {"owner": "owner@example.com"}
    for role in (Role.EDITOR, Role.VIEWER):
        add_member(session, product, role, f"{role.value}@example.com")
        members[role.value] = f"{role.value}@example.com"
    note = make_note(
        session, product, version="2.0.0", title="Exports", now=now - timedelta(days=10)
    )
    later = make_note(
        session, product, version="2.1.0", title="Dark mode", now=now - timedelta(days=3)
    )
    ago = lambda n: today - timedelta(days=n)  # noqa: E731
    users = [
        User("u1", "2.0.0", "pro", [ago(9), ago(5), ago(1)]),
        User("u2", "2.0.0", "pro", [ago(8), ago(2)]),
        User("u3", "2.1.0", "free", [ago(7), ago(2), ago(1)]),
        User("u4", "2.0.0", "free", [ago(9)]),
        User("u5", "2.0.0", "pro", [ago(4)]),
        User("u6", "2.1.0", "pro", [ago(2)]),
        User("u7", "1.9.0", "pro", [ago(6), ago(1)]),  # an older version: never exposed
        User("u8", "2.1.0", "free", [ago(15), ago(12)]),  # gone before 2.0.0
        User("u9", None, None, [ago(8)]),  # no version: exposed to every note
        User("u10", "2.0.0", "=cmd()", [ago(3)]),  # an attribute that looks like a formula
    ]
    # Users still on 1.9.0, never exposed, who make "plan" an attribute enough users have
    # for the roll-up to count it as a segment.
    users += [
        User(f"b{n:02d}", "1.9.0", ("pro", "free")[n % 2], [ago(6 + n % 9)]) for n in range(20)
    ]
    for user in users:
        visit(session, product, user)
    reads = {
        "u1": ("widget", timedelta(hours=2)),
        "u9": ("widget", timedelta(hours=5)),
        "u2": ("popup", timedelta(days=1)),
        "u3": ("email", timedelta(days=3)),
        "u4": ("widget", timedelta(days=6)),
    }
    rows = {user.external_id: user.row for user in users}
    for external_id, (channel, after) in reads.items():
        session.add(
            ReadReceipt(
                end_user_id=rows[external_id].id,
                note_id=note.id,
                read_at=note.published_at + after,
                channel=channel,
            )
        )
    later_reads = ["u3"]
    session.add(
        ReadReceipt(
            end_user_id=rows["u3"].id,
            note_id=later.id,
            read_at=later.published_at + timedelta(hours=1),
            channel="popup",
        )
    )
    reactions = [
        ("u1", "👍", "Exactly what we needed"),
        ("u2", "😕", '=HYPERLINK("http://evil.example")'),
        ("u3", "👍", None),
        ("u5", "👎", "Please revert; it broke our export"),
    ]
    for external_id, reaction, comment in reactions:
        at = note.published_at + timedelta(days=1)
        session.add(
            Reaction(
                end_user_id=rows[external_id].id,
                note_id=note.id,
                reaction=reaction,
                comment=comment,
                created_at=at,
                updated_at=at,
            )
        )
    session.commit()
    rollups.rebuild(session, product, now=utcnow())
    return Built(product, note, later, users, reads, later_reads, reactions, now, members)


# Counting again, from what was built -----------------------------------------------------


def includes(note_version: str, user_version: str | None) -> bool:
    return user_version is None or versions.parse(user_version) >= versions.parse(note_version)


def exposed(b: Built, note: Note) -> list[User]:
    """Users seen on a version that includes the note on a day from its publication on."""
    published = note.published_at.astimezone(UTC).date()
    return [
        u
        for u in b.users
        if includes(note.version, u.version) and any(day >= published for day in u.days)
    ]


def weekly_active(b: Built, end: date) -> list[User]:
    return [u for u in b.users if any(end - timedelta(days=6) <= d <= end for d in u.days)]


def rate(readers: int, exposed_users: int) -> str:
    return f"{min(readers / exposed_users, 1) * 100:.1f} %"


def wilson(readers: int, exposed_users: int) -> tuple[str, str]:
    """The 95 % Wilson interval, as the pages write its ends."""
    z = 1.959963984540054
    n, p = exposed_users, readers / exposed_users
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{max(centre - half, 0) * 100:.1f} %", f"{min(centre + half, 1) * 100:.1f} %"


def nearest_rank(values: list[timedelta], percent: int) -> timedelta:
    ordered = sorted(values)
    return ordered[math.ceil(percent * len(ordered) / 100) - 1]


# Reading the pages ----------------------------------------------------------------------------


def page(client, url: str, status: int = 200):
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return lxml.html.fromstring(response.get_data(as_text=True))


def words(element) -> str:
    return " ".join(element.text_content().split())


def table_rows(tree, caption: str) -> list[list[str]]:
    """The body rows of the table captioned ``caption``, each a list of its cells' words."""
    [table] = tree.xpath(f"//table[caption[normalize-space()='{caption}']]")
    return [[words(cell) for cell in row.xpath("./th|./td")] for row in table.xpath("./tbody/tr")]


def log_in(client, b: Built, role: str) -> None:
    response = AuthActions(client).login(b.members[role])
    assert response.status_code == 302


def post_export(client, b: Built, note: Note, **form):
    return client.post(
        f"/console/p/lumen/notes/{note.id}/non-readers.csv",
        data={"csrf_token": csrf_token(client), **form},
    )


def post_comments_export(client, note: Note, **form):
    return client.post(
        f"/console/p/lumen/notes/{note.id}/comments.csv",
        data={"csrf_token": csrf_token(client), **form},
    )


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def audit_actions(session, product: Product) -> list[tuple[str, str, str | None]]:
    """The product's export records: what, the summary, and who."""
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.product_id == product.id).order_by(AuditEvent.id)
    )
    return [
        (e.action, e.summary, e.actor.email if e.actor else None)
        for e in events
        if e.action.startswith("note.") and e.action.endswith("_exported")
    ]


# Who may do what --------------------------------------------------------------------------------


def test_a_viewer_reads_every_insights_page_but_sees_no_export(client, built: Built) -> None:
    log_in(client, built, "viewer")
    note = built.note
    product_page = page(client, "/console/p/lumen/insights")
    assert product_page.xpath("//h1")[0].text_content() == "Insights"
    note_page = page(client, f"/console/p/lumen/notes/{note.id}/insights")
    assert note_page.xpath("//h1")[0].text_content() == "Exports"
    assert not note_page.xpath("//form[contains(@action, 'non-readers.csv')]")
    assert "Editors and owners can download" in words(note_page.xpath("//*[@id='export']")[0])
    comments = page(client, f"/console/p/lumen/notes/{note.id}/comments")
    assert not comments.xpath("//a[contains(@href, 'comments.csv')]")


def test_the_note_editors_readership_links_to_the_notes_insights(client, built: Built) -> None:
    log_in(client, built, "viewer")
    tree = page(client, f"/console/p/lumen/notes/{built.note.id}")
    [link] = tree.xpath("//section[@aria-label='Readership']//a[contains(., 'Insights')]")
    assert link.get("href") == f"/console/p/lumen/notes/{built.note.id}/insights"


def test_a_viewer_cannot_export(client, session, built: Built) -> None:
    log_in(client, built, "viewer")
    note = built.note
    assert post_export(client, built, note, attribute="plan").status_code == 403
    assert post_comments_export(client, note).status_code == 403
    assert audit_actions(session, built.product) == []


@pytest.mark.parametrize("role", ["editor", "owner"])
def test_editors_and_owners_export(client, built: Built, role: str) -> None:
    log_in(client, built, role)
    note = built.note
    tree = page(client, f"/console/p/lumen/notes/{note.id}/insights")
    [form] = tree.xpath("//form[contains(@action, 'non-readers.csv')]")
    assert form.get("method") == "post" and form.xpath(".//input[@name='csrf_token']")
    offered = form.xpath(".//input[@name='attribute']/@value")
    assert {"plan", "locale", "app_version"} <= set(offered)
    assert post_export(client, built, note, attribute="plan").status_code == 200
    assert post_comments_export(client, note).status_code == 200


def test_another_products_note_is_not_found(client, session, built: Built) -> None:
    other = make_product(session, name="Other", slug="other")
    theirs = make_note(session, other, title="Not yours")
    log_in(client, built, "owner")
    for path in ("insights", "comments"):
        assert client.get(f"/console/p/lumen/notes/{theirs.id}/{path}").status_code == 404
    assert post_export(client, built, theirs).status_code == 404
    assert post_comments_export(client, theirs).status_code == 404
    # Nor can the other product's pages be reached by a member of Lumen only.
    assert client.get("/console/p/other/insights").status_code == 404
    assert audit_actions(session, other) == []


# Bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=2026-13-01", "Enter a day such as 2026-10-01."),
        ("end=yesterday", "Enter a day such as 2026-10-01."),
        ("start=2026-10-09&end=2026-10-01", "The range ends before it starts."),
        ("start=2024-01-01&end=2026-01-01", "Pick at most 366 days."),
        # A day off the calendar's edge for the default range's 28 days back from it.
        ("end=0001-01-05", "Pick a day from 1970 on."),
        ("start=0001-01-05", "Pick a day from 1970 on."),
        ("end=0001-01-05&compare=previous", "Pick a day from 1970 on."),
        ("by=shoe-size", "“shoe-size” is not an attribute"),
        ("compare=yesterday", "Compare with the previous period or with the previous release."),
    ],
)
def test_bad_input_is_said_beside_the_picker(client, built: Built, query, message) -> None:
    log_in(client, built, "viewer")
    for url in (
        f"/console/p/lumen/insights?{query}",
        f"/console/p/lumen/notes/{built.note.id}/insights?{query}",
    ):
        if "compare" in query and "notes" in url:
            continue  # the note's page compares nothing
        tree = page(client, url, 422)
        said = " ".join(words(e) for e in tree.xpath("//*[contains(@class, 'field-error')]"))
        said += " ".join(words(e) for e in tree.xpath("//*[contains(@class, 'flash-error')]"))
        assert message in said, url
        # The form message, and no figures.
        assert not tree.xpath("//*[contains(@class, 'insight-stats')]"), url
        assert not tree.xpath("//svg"), url


def test_there_is_no_release_to_compare_with_until_there_are_two(client, session) -> None:
    owner = make_member(session, "owner@example.com")
    make_product(session, owner, slug="solo")
    AuthActions(client).login("owner@example.com")
    tree = page(client, "/console/p/solo/insights")
    assert not tree.xpath("//a[contains(@href, 'compare=release')]")
    tree = page(client, "/console/p/solo/insights?compare=release", 422)
    assert "There is no earlier release to compare with." in words(tree)


def test_releases_longer_than_366_days_compare_in_their_last_days(client, session) -> None:
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner, slug="slow")
    now = utcnow()
    make_note(session, product, version="1.0.0", now=now - timedelta(days=900))
    make_note(session, product, version="2.0.0", now=now - timedelta(days=400))
    AuthActions(client).login("owner@example.com")
    tree = page(client, "/console/p/slow/insights")
    [link] = tree.xpath("//a[normalize-space()='This release vs the previous one']")
    tree = page(client, link.get("href"))
    lede = words(tree.xpath("//p[contains(@class, 'lede')]")[0])
    assert lede.startswith("Release 2.0.0, its last 366 days (")
    assert "compared with Release 1.0.0, its last 366 days (" in lede
    start = now.date() - timedelta(days=365)
    assert tree.xpath("//input[@name='start']/@value") == [start.isoformat()]


def test_a_note_dated_year_1_opens_its_pages(client, session) -> None:
    """An import dated 1 January of year 1: the product's page (its releases reach back
    to the calendar's first day) and the note's, whose series draws the last 366 days."""
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner, slug="old")
    note = make_note(session, product, version="1.0.0", now=datetime(1, 1, 1, 9, tzinfo=UTC))
    make_note(session, product, version="1.1.0", now=datetime(1, 1, 1, 10, tzinfo=UTC))
    rollups.rebuild(session, product, now=utcnow())
    session.commit()
    AuthActions(client).login("owner@example.com")
    page(client, "/console/p/old/insights")
    page(client, "/console/p/old/insights?compare=release", 422)
    tree = page(client, f"/console/p/old/notes/{note.id}/insights")
    rows = table_rows(tree, "Exposed users and readers since publication")
    today = utcnow().date()
    first = today - timedelta(days=365)
    assert [row[0] for row in (rows[0], rows[-1])] == [
        f"{first.day} {first:%b}",
        f"{today.day} {today:%b}",
    ]
    assert len(rows) == 366


def test_a_bad_comment_filter_or_export_column_is_refused(client, session, built: Built) -> None:
    log_in(client, built, "editor")
    note = built.note
    tree = page(client, f"/console/p/lumen/notes/{note.id}/comments?reaction=%F0%9F%8D%95", 422)
    assert "Pick one of" in words(tree.xpath("//*[contains(@class, 'flash-error')]")[0])
    tree = page(client, f"/console/p/lumen/notes/{note.id}/comments?q={'x' * 201}", 422)
    said = words(tree.xpath("//*[contains(@class, 'flash-error')]")[0])
    assert said == "Search for at most 200 characters."
    response = post_export(client, built, note, attribute=["plan", "shoe_size"])
    assert response.status_code == 422
    tree = lxml.html.fromstring(response.get_data(as_text=True))
    [error] = tree.xpath("//*[@id='export']//*[contains(@class, 'field-error')]")
    assert words(error) == "This product's users have no “shoe_size”."
    # The ticked boxes stay ticked.
    assert tree.xpath("//*[@id='export']//input[@value='plan']/@checked")
    assert audit_actions(session, built.product) == []


# The figures ------------------------------------------------------------------------------------


def test_the_note_page_shows_its_reach_and_reading(client, built: Built) -> None:
    log_in(client, built, "viewer")
    note = built.note
    reached = exposed(built, note)
    readers = len(built.reads)
    assert (len(reached), readers) == (8, 5)  # the data is what this test means it to be
    tree = page(client, f"/console/p/lumen/notes/{note.id}/insights")

    def figure(name: str) -> str:
        return words(tree.xpath(f"//dd[@data-figure='{name}']")[0])

    low, high = wilson(readers, len(reached))
    assert figure("exposed") == f"{len(reached):,}"
    assert figure("readers") == f"{readers:,}"
    assert figure("rate") == rate(readers, len(reached))
    assert f"95 % CI {low}–{high}" in words(tree.xpath("//dd[@data-figure='rate']/..")[0])
    # Nearest rank over the five reads: the third (a day) and the fifth (six days).
    after = [after for _, after in built.reads.values()]
    assert nearest_rank(after, 50) == timedelta(days=1)
    assert (figure("median"), figure("p90")) == ("1 d", "6 d")

    # Day by day since publication, counted up.
    published = note.published_at.astimezone(UTC).date()
    days = [published + timedelta(days=n) for n in range((built.now.date() - published).days + 1)]
    expected = []
    for day in days:
        seen = [u for u in reached if min(d for d in u.days if d >= published) <= day]
        read = [
            r for r, (_, after) in built.reads.items() if (note.published_at + after).date() <= day
        ]
        shown_rate = rate(len(read), len(seen)) if seen else "—"
        expected.append([f"{day.day} {day:%b}", str(len(seen)), str(len(read)), shown_rate])
    assert table_rows(tree, "Exposed users and readers since publication") == expected

    # Reads by channel, largest first, as shares of the readers.
    channels = Counter(channel for channel, _ in built.reads.values())
    labels = {"widget": "Widget panel", "popup": "Popup", "email": "E-mail, read on the web"}
    rows = table_rows(tree, "Reads by channel")
    assert sorted(rows) == sorted(
        [labels[c], str(n), rate(n, readers)] for c, n in channels.items()
    )
    assert [int(row[1]) for row in rows] == sorted(channels.values(), reverse=True)
    bars = tree.xpath("//svg[contains(@class, 'chart-hbar')]//rect[@class='chart-hbar-fill']/title")
    assert [b.text_content() for b in bars] == [f"{a}: {n} · {share}" for a, n, share in rows]

    # Reactions: every kind counted; the comments, newest first, the latest three.
    totals = Counter(reaction for _, reaction, _ in built.reactions)
    for reaction, label in (("👍", "Helpful"), ("👎", "Not helpful"), ("😕", "Confusing")):
        assert words(tree.xpath(f"//strong[@data-reaction='{label}']")[0]) == str(totals[reaction])
    listed = [
        words(e) for e in tree.xpath("//*[@id='comments-title']/..//p[@class='comment-text']")
    ]
    assert sorted(listed) == sorted(c for _, _, c in built.reactions if c)


def test_the_french_console_writes_days_figures_and_rates_the_french_way(
    client, built: Built
) -> None:
    """Dates and figures come from Babel: they need no catalogue (the caption they are
    found by is the catalogue's, or the English without one)."""
    log_in(client, built, "viewer")
    note = built.note
    response = client.get(
        f"/console/p/lumen/notes/{note.id}/insights", headers={"Accept-Language": "fr"}
    )
    tree = lxml.html.fromstring(response.get_data(as_text=True))
    assert tree.get("lang") == "fr"
    readers, reached = len(built.reads), len(exposed(built, note))
    shown = words(tree.xpath("//dd[@data-figure='rate']")[0])
    assert shown == rate(readers, reached).replace(".", ",")
    months = dates.get_month_names("abbreviated", locale="fr")
    published = note.published_at.astimezone(UTC).date()
    caption = said("fr", "Exposed users and readers since publication")
    first_row = table_rows(tree, caption)[0]
    assert first_row[0] == f"{published.day} {months[published.month]}"
    assert first_row[3] == "—" or first_row[3].endswith(" %") and "," in first_row[3]


@needs_catalogue("fr", "Weekly active users")
def test_the_french_console_names_the_insights_in_french(client, built: Built) -> None:
    log_in(client, built, "viewer")
    response = client.get("/console/p/lumen/insights", headers={"Accept-Language": "fr"})
    text = words(lxml.html.fromstring(response.get_data(as_text=True)))
    for english in ("Weekly active users", "Show the numbers", "Notes by read rate"):
        assert english not in text


def folded(counts: dict[str, list[int]]) -> list[tuple[str, list[int]]]:
    """A breakdown as the pages show it: the values at least 5 users have, most users
    first, then every other value summed as Other."""
    alone = sorted(
        ((v, c) for v, c in counts.items() if c[0] >= 5), key=lambda item: (-item[1][0], item[0])
    )
    rest = [c for v, c in counts.items() if c[0] < 5]
    return alone + (
        [("Other", [sum(column) for column in zip(*rest, strict=True)])] if rest else []
    )


def test_the_note_page_breaks_reading_down_by_a_segment(client, session, built: Built) -> None:
    # Five more users reached with u10's plan, which a spreadsheet would take for a
    # formula: six users have it, enough for it to be shown on its own.
    yesterday = built.now.date() - timedelta(days=1)
    more = [User(f"c{n}", "2.0.0", "=cmd()", [yesterday]) for n in range(5)]
    for user in more:
        visit(session, built.product, user)
    built.users.extend(more)
    session.commit()
    rollups.rebuild(session, built.product, now=utcnow())
    session.commit()
    log_in(client, built, "viewer")
    note = built.note
    tree = page(client, f"/console/p/lumen/notes/{note.id}/insights?by=plan")
    reached = exposed(built, note)
    by_plan: dict[str, list[int]] = {}
    for user in reached:
        counts = by_plan.setdefault(user.plan if user.plan is not None else "(none)", [0, 0])
        counts[0] += 1
        counts[1] += user.external_id in built.reads
    assert by_plan["pro"][0] == 4 and by_plan["=cmd()"][0] == 6  # as this test means
    rows = table_rows(tree, "Read rate by plan")
    assert rows == [
        [value, f"{r} of {e} exposed", f"{rate(r, e)} 95 % CI {'–'.join(wilson(r, e))}"]
        for value, (e, r) in folded(by_plan)
    ]
    # The formula-like value is shown as text, not run; "pro", which 4 users have, and
    # the others fewer have, only within Other; the page says why.
    assert [row[0] for row in rows] == ["=cmd()", "Other"]
    hint = words(tree.xpath("//*[@id='segment']//p[@class='hint']")[0])
    assert "every value it went out to fewer than 5 users under" in hint


def test_the_product_page_shows_active_users_versions_and_notes(client, built: Built) -> None:
    log_in(client, built, "viewer")
    tree = page(client, "/console/p/lumen/insights?by=plan")
    today = built.now.date()

    def stat(name: str) -> str:
        return words(tree.xpath(f"//div[@data-stat='{name}']/dd[@class='stat-value']")[0])

    active = weekly_active(built, today)
    assert stat("weekly") == str(len(active))
    # Each day of the last 28, the users seen in the 7 days to it.
    days = [today - timedelta(days=27 - n) for n in range(28)]
    assert table_rows(tree, "Weekly active users") == [
        [f"{day.day} {day:%b}", str(len(weekly_active(built, day)))] for day in days
    ]
    # Versions in use among this week's users, by the version they were seen on.
    in_use = Counter(u.version or "(none)" for u in active)
    assert sorted(
        table_rows(tree, f"Versions in use, the 7 days to {today.day} {today:%b}")
    ) == sorted([version, str(n), rate(n, len(active))] for version, n in in_use.items())
    plans: dict[str, list[int]] = {}
    for user in active:
        plans.setdefault(user.plan if user.plan is not None else "(none)", [0])[0] += 1
    assert plans["pro"] == [7] and 0 < plans["free"][0] < 5  # as this test means
    assert table_rows(tree, f"Active users by plan, the 7 days to {today.day} {today:%b}") == [
        [plan, str(n), rate(n, len(active))] for plan, (n,) in folded(plans)
    ]
    hint = words(tree.xpath("//*[@id='segment']//p[@class='hint']")[0])
    assert "every value fewer than 5 users have, so that no row singles anyone out" in hint

    # Both notes went out in the range: ranked by read rate, with their readers.
    figures = [
        (note, len(reads), len(exposed(built, note)))
        for note, reads in ((built.note, built.reads), (built.later, built.later_reads))
    ]
    ranking = tree.xpath("//*[@id='by-rate-title']/..//table/tbody/tr")
    assert [[words(cell) for cell in row.xpath("./th|./td")] for row in ranking] == [
        [f"{note.title} {note.version}", rate(r, e), f"{r} of {e}"]
        for note, r, e in sorted(figures, key=lambda f: -f[1] / f[2])
    ]
    assert stat("notes") == "2"
    readers = sum(r for _, r, _ in figures)
    reached = sum(e for _, _, e in figures)
    assert stat("readers") == str(readers)
    assert stat("rate") == rate(readers, reached)


@pytest.fixture
def many(session) -> Many:
    """Twenty-four notes in the last 28 days, more than a ranking shows (see
    ``tests.test_insights.many_notes``), for the owner of "many"."""
    owner = make_member(session, "owner@example.com")
    return many_notes(session, make_product(session, owner, slug="many"), now=utcnow())


def test_the_product_pages_totals_count_every_note_not_the_top_20(client, many: Many) -> None:
    AuthActions(client).login("owner@example.com")
    tree = page(client, "/console/p/many/insights")
    today = utcnow().date()
    counted = [
        minor
        for minor, note in enumerate(many.notes)
        if today - timedelta(days=27) <= note.published_at.date() <= today
    ]
    assert len(counted) == 24
    exposed = [len(many.exposed(minor, today)) for minor in counted]
    readers = [len(many.readers(minor, today)) for minor in counted]
    capped = sum(min(r, e) for r, e in zip(readers, exposed, strict=True))

    def stat(name: str) -> list[str]:
        return [words(dd) for dd in tree.xpath(f"//div[@data-stat='{name}']/dd")]

    assert stat("notes") == ["24"]
    assert stat("readers") == [f"{sum(readers):,}"]
    low, high = wilson(capped, sum(exposed))
    assert stat("rate") == [rate(capped, sum(exposed)), f"95 % CI {low}–{high}"]
    # The rankings still show the top 20.
    assert len(tree.xpath("//*[@id='by-rate-title']/..//table/tbody/tr")) == 20


def test_a_value_with_more_readers_than_users_reached_shows_100_percent(client, many: Many) -> None:
    AuthActions(client).login("owner@example.com")
    minor = len(many.notes) - 8
    tree = page(client, f"/console/p/many/notes/{many.notes[minor].id}/insights?by=app_version")
    wanted = many_segments(many, minor, utcnow().date())
    assert any(0 < e < r for _, e, r in wanted)  # the data is what this test means it to be

    def shown(e: int, r: int) -> str:
        if e == 0:
            return "—"
        low, high = wilson(min(r, e), e)
        return f"{rate(r, e)} 95 % CI {low}–{high}"

    assert table_rows(tree, "Read rate by App version") == [
        [value, f"{r} of {e} exposed", shown(e, r)] for value, e, r in wanted
    ]
    # Why a value can have more readers than users reached is said once, not per row.
    said = "A user is counted under the value they had when counted"
    assert words(tree).count(said) == 1
    assert said in words(tree.xpath("//*[@id='segment']//p[@class='hint']")[0])


def test_comparing_shows_the_other_range_beside_each_total(client, built: Built) -> None:
    log_in(client, built, "viewer")
    tree = page(client, "/console/p/lumen/insights")
    [link] = tree.xpath("//a[normalize-space()='Compare with the previous period']")
    tree = page(client, link.get("href"))
    today = built.now.date()
    before = today - timedelta(days=28)
    assert "compared with" in words(tree.xpath("//p[contains(@class, 'lede')]")[0])
    weekly = tree.xpath("//div[@data-stat='weekly']")[0]
    now_count, then_count = len(weekly_active(built, today)), len(weekly_active(built, before))
    assert words(weekly.xpath("./dd[@class='stat-value']")[0]) == str(now_count)
    assert f"vs {then_count}" in words(weekly)
    # The chart draws both periods, day for day.
    assert (
        len(tree.xpath("//svg[contains(@class, 'chart-compare')]//path[@class='chart-path']")) >= 2
    )
    # This release against the one before: 2.1.0's window against 2.0.0's.
    [link] = tree.xpath("//a[normalize-space()='This release vs the previous one']")
    tree = page(client, link.get("href"))
    lede = words(tree.xpath("//p[contains(@class, 'lede')]")[0])
    assert lede.startswith("Release 2.1.0 (") and "compared with Release 2.0.0 (" in lede
    published = built.later.published_at.astimezone(UTC).date()
    assert tree.xpath("//input[@name='start']/@value") == [published.isoformat()]


def test_the_comments_page_searches_and_filters(client, built: Built) -> None:
    log_in(client, built, "viewer")
    url = f"/console/p/lumen/notes/{built.note.id}/comments"
    commented = [(r, c) for _, r, c in built.reactions if c]
    tree = page(client, url)
    assert sorted(words(e) for e in tree.xpath("//p[@class='comment-text']")) == sorted(
        c for _, c in commented
    )
    assert words(tree.xpath("//p[contains(@class, 'lede')]")[0]).startswith(
        f"{len(commented)} comments"
    )
    tree = page(client, url + "?q=REVERT")
    assert [words(e) for e in tree.xpath("//p[@class='comment-text']")] == [
        "Please revert; it broke our export"
    ]
    tree = page(client, url + "?reaction=%F0%9F%98%95")
    assert [words(e) for e in tree.xpath("//p[@class='comment-text']")] == [
        '=HYPERLINK("http://evil.example")'
    ]


# Exports ------------------------------------------------------------------------------------------


def test_the_non_readers_export_is_quoted_formula_safe_and_audited(
    client, session, built: Built
) -> None:
    log_in(client, built, "editor")
    note = built.note
    response = post_export(client, built, note, attribute=["plan"])
    assert response.mimetype == "text/csv"
    assert f"lumen-note-{note.id}-not-read-" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    header, *rows = read_csv(response)
    assert header == ["external_id", "last_seen_at", "plan"]
    non_readers = [u for u in exposed(built, note) if u.external_id not in built.reads]
    assert sorted(row[0] for row in rows) == sorted(u.external_id for u in non_readers)
    plans = {row[0]: row[2] for row in rows}
    assert plans["u10"] == "'=cmd()"  # never read as a formula
    assert plans["u6"] == "pro"
    # Every cell quoted, so a ";" in one cannot start another in a spreadsheet.
    assert all(line.startswith('"') and line.endswith('"') for line in text.splitlines())
    [(action, summary, who)] = audit_actions(session, built.product)
    assert (action, who) == ("note.non_readers_exported", "editor@example.com")
    assert "plan" in summary and "ids as they are" in summary


def test_pseudonyms_are_stable_keyed_and_not_the_ids(client, app, session, built: Built) -> None:
    log_in(client, built, "owner")
    note = built.note
    first = read_csv(post_export(client, built, note, pseudonymise="y"))
    second = read_csv(post_export(client, built, note, pseudonymise="y", attribute="plan"))
    assert first[0] == ["pseudonym", "last_seen_on"]
    assert [row[0] for row in first[1:]] == [row[0] for row in second[1:]]
    ids = {u.external_id for u in built.users}
    assert not ids & {row[0] for row in first[1:]}
    # The key: HMAC of the app's secret and the product's id; HMAC-SHA256 of the user's.
    key = hmac.new(
        app.config["SECRET_KEY"].encode(),
        f"tidings-pseudonym:{built.product.id}".encode(),
        hashlib.sha256,
    ).digest()
    non_readers = [u for u in exposed(built, note) if u.external_id not in built.reads]
    # In the pseudonyms' order, with the day each user was last seen and not the moment:
    # neither the order nor the time leads back to a user's row in a plain export.
    assert first[1:] == sorted(
        [hmac.new(key, u.external_id.encode(), hashlib.sha256).hexdigest(), u.days[-1].isoformat()]
        for u in non_readers
    )
    summaries = [summary for _, summary, _ in audit_actions(session, built.product)]
    assert len(summaries) == 2 and all("pseudonymised" in s for s in summaries)


def test_pseudonyms_follow_the_product_not_its_address(client, app, session, built: Built) -> None:
    """A product keeps its pseudonyms when its slug changes; a new product given the old
    slug gets pseudonyms of its own, never the first product's."""
    log_in(client, built, "owner")
    before = read_csv(post_export(client, built, built.note, pseudonymise="y"))
    built.product.slug = "lumen-app"
    session.commit()
    after = read_csv(
        client.post(
            f"/console/p/lumen-app/notes/{built.note.id}/non-readers.csv",
            data={"csrf_token": csrf_token(client), "pseudonymise": "y"},
        )
    )
    assert after == before and len(before) > 2
    newcomer = make_product(session, make_member(session, "new@example.com"), slug="lumen")
    with app.test_request_context():
        assert insights_views.pseudonym_key(newcomer) != insights_views.pseudonym_key(built.product)


def test_the_comments_export_is_quoted_formula_safe_and_audited(
    client, session, built: Built
) -> None:
    log_in(client, built, "editor")
    note = built.note
    response = post_comments_export(client, note, q="http")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    header, *rows = read_csv(response)
    assert header[:2] == ["reaction", "comment"]
    assert [row[:2] for row in rows] == [["😕", '\'=HYPERLINK("http://evil.example")']]
    text = response.get_data(as_text=True)
    assert all(line.startswith('"') and line.endswith('"') for line in text.splitlines())
    [(action, summary, who)] = audit_actions(session, built.product)
    assert (action, who) == ("note.comments_exported", "editor@example.com")
    assert "http" in summary


def test_the_comments_export_is_a_post_a_link_from_elsewhere_cannot_make(
    client, session, built: Built
) -> None:
    """The export writes to the audit log: a link or a form on another site, which has no
    CSRF token, cannot put one there in an editor's name. The page's button posts the
    search and reaction shown, with the token."""
    log_in(client, built, "editor")
    note = built.note
    url = f"/console/p/lumen/notes/{note.id}/comments.csv"
    assert client.get(url + "?q=http").status_code == 405
    assert client.post(url, data={"q": "http"}).status_code == 400
    assert audit_actions(session, built.product) == []

    tree = page(client, f"/console/p/lumen/notes/{note.id}/comments?q=revert&reaction=%F0%9F%91%8E")
    [form] = tree.xpath("//form[@action=$url]", url=url)
    assert form.get("method") == "post"
    fields = {i.get("name"): i.get("value") for i in form.xpath(".//input[@type='hidden']")}
    assert fields.pop("csrf_token") and fields == {"q": "revert", "reaction": "👎"}
    fields["csrf_token"] = form.xpath(".//input[@name='csrf_token']/@value")[0]
    response = client.post(url, data=fields)
    assert [row[:2] for row in read_csv(response)[1:]] == [
        ["👎", "Please revert; it broke our export"]
    ]
    [(action, summary, who)] = audit_actions(session, built.product)
    assert (action, who) == ("note.comments_exported", "editor@example.com")
    assert summary.endswith("reaction 👎, holding “revert”")
