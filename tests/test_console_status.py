"""Console → Status: owners only; the figures it shows, counted again here from the rows
each test made; the warnings at the top when, and only when, they are due; and nothing of
another product's mail, webhooks or widget traffic.

Times are relative to the clock: the page reads it, and runs the web's watch. Rows are
placed minutes away from the edges of the hour the page shows, so a page drawn a minute
after the test began shows the same figures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import lxml.html
import pytest
from sqlalchemy import event, func, select, update

from announcements import monitoring
from announcements.models import (
    Alert,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Role,
    SupportConnection,
    SupportDesk,
    TeamMember,
    Ticket,
    TrafficMinute,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WorkerHeartbeat,
    utcnow,
)
from app.extensions import db
from app.mail import jobs
from tests.conftest import AuthActions
from tests.factories import (
    add_member,
    make_member,
    make_note,
    make_outbox_message,
    make_product,
)

# The latency buckets' upper bounds (ms) as the design names them; one more for slower.
BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class World:
    product: Product
    other: Product
    owner: TeamMember
    other_owner: TeamMember
    people: dict[Role, TeamMember]


@pytest.fixture
def world(session) -> World:
    """Acme, with a member of each role, and Elsewhere, another owner's product."""
    owner = make_member(session, "owner@example.com")
    product = make_product(session, owner=owner, slug="acme", name="Acme")
    people = {
        role: add_member(session, product, role, f"{role.value}@example.com")
        for role in (Role.VIEWER, Role.EDITOR)
    }
    people[Role.OWNER] = owner
    other_owner = make_member(session, "other-owner@example.com")
    other = make_product(session, owner=other_owner, slug="elsewhere", name="Elsewhere")
    return World(product, other, owner, other_owner, people)


# Rows, as the worker, the outbox, the webhooks and the web would have written them ---------


def minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def beat(session, name: str, beat_at: datetime, started_at: datetime | None = None) -> None:
    session.add(WorkerHeartbeat(name=name, beat_at=beat_at, started_at=started_at or beat_at))
    session.commit()


_numbers = iter(range(1, 1_000_000))


def mail(session, product: Product, status: OutboxStatus, **fields) -> OutboxMessage:
    """A confirmation mail to a new subscriber of ``product``."""
    email = f"s{next(_numbers)}@{product.slug}.test"
    return make_outbox_message(session, product, status, email=email, **fields)


def call(session, hook: Webhook, status: OutboxStatus, **fields) -> WebhookDelivery:
    delivery = WebhookDelivery(
        webhook_id=hook.id, event=WebhookEvent.PUBLISHED, status=status, **fields
    )
    session.add(delivery)
    session.commit()
    return delivery


def webhook(session, product: Product, url: str) -> Webhook:
    hook = Webhook(product_id=product.id, url=url, secret="s", events=["note.published"])
    session.add(hook)
    session.commit()
    return hook


def histogram(**per_bound: int) -> list[int]:
    """Requests per latency bucket, by bound: ``histogram(ms50=3, over=1)``."""
    counts = [0] * (len(BOUNDS_MS) + 1)
    for name, count in per_bound.items():
        index = len(BOUNDS_MS) if name == "over" else BOUNDS_MS.index(int(name[2:]))
        counts[index] = count
    return counts


def traffic(
    session, product: Product, at: datetime, requests: int, errors: int, latency: list[int]
) -> None:
    session.add(
        TrafficMinute(
            process=f"web-{next(_numbers)}",
            minute=minute(at),
            product_id=product.id,
            requests=requests,
            errors=errors,
            latency=latency,
        )
    )
    session.commit()


# Reading the page ---------------------------------------------------------------------------


def page(client, path: str = "/console/p/acme/status"):
    answer = client.get(path)
    return answer, lxml.html.fromstring(answer.get_data(as_text=True))


def text(node) -> str:
    return " ".join(node.text_content().split())


def figure(tree, name: str) -> str:
    [node] = tree.xpath(f'//*[@data-figure="{name}"]')
    return text(node)


def warnings(tree) -> dict[str, str]:
    """The items at the top of the page: title -> what it says."""
    return {
        text(li.xpath("strong")[0]): text(li.xpath("span")[0])
        for li in tree.xpath('//section[contains(@class, "status-attention")]//li')
    }


def row_cells(tree, table_class: str) -> list[list[str]]:
    table = tree.xpath(f'//table[contains(@class, "{table_class}")]')[0]
    return [[text(cell) for cell in tr.xpath("th|td")] for tr in table.xpath("tbody/tr")]


# Counting again, as the design defines the figures ----------------------------------------


def p95(latency: list[int]) -> str:
    """The bound of the bucket holding the 95th percentile, as the page writes it."""
    total = sum(latency)
    rank, seen = math.ceil(0.95 * total), 0
    for index, count in enumerate(latency):
        seen += count
        if seen >= rank:
            if index == len(BOUNDS_MS):
                return "over 5 s"
            bound = BOUNDS_MS[index]
            return f"≤ {bound / 1000:g} s" if bound >= 1000 else f"≤ {bound} ms"
    raise AssertionError("not reached")


def wilson(errors: int, requests: int) -> tuple[float, float, float]:
    share = errors / requests
    spread = Z_95 * Z_95 / requests
    centre = (share + spread / 2) / (1 + spread)
    margin = Z_95 * math.sqrt(share * (1 - share) / requests + spread / (4 * requests))
    margin /= 1 + spread
    return share, max(0.0, centre - margin), min(1.0, centre + margin)


def percent(value: float) -> str:
    """A share as the page writes an error rate."""
    value *= 100
    return f"{value:.2g}" if value < 1 else f"{value:.1f}"


# Who may look ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_only_owners_see_status(client, auth: AuthActions, world: World, role: Role) -> None:
    auth.login(world.people[role].email)
    assert client.get("/console/p/acme/status").status_code == 403
    auth.logout()
    auth.login(world.owner.email)
    assert client.get("/console/p/acme/status").status_code == 200


def test_another_products_status_is_not_found(client, auth: AuthActions, world: World) -> None:
    auth.login(world.owner.email)
    assert client.get("/console/p/elsewhere/status").status_code == 404
    assert client.get("/console/p/nowhere/status").status_code == 404
    auth.logout()
    answer = client.get("/console/p/acme/status")
    assert answer.status_code == 302 and "/console/login" in answer.headers["Location"]


# The figures ------------------------------------------------------------------------------------


def test_the_figures_are_the_products_own_counted_from_its_rows(
    app, client, auth: AuthActions, session, world: World
) -> None:
    now = utcnow()
    acme, elsewhere = world.product, world.other
    beat(session, "worker-host:101:5", now - timedelta(seconds=40), now - timedelta(hours=3))
    beat(session, "worker-host:202:9", now - timedelta(hours=2), now - timedelta(hours=5))
    for _ in range(3):
        assert jobs.request_refresh(acme.id)

    # Acme's mail: 3 not tried yet, 1 given up on today and 1 the day before, 4 sent, and 2
    # waiting after a refusal (the newest error, so the one shown).
    for _ in range(3):
        mail(session, acme, OutboxStatus.QUEUED)
    mail(
        session,
        acme,
        OutboxStatus.FAILED,
        attempts=1,
        last_error="550 5.1.1 <gone@acme.test>: no such user",
        created_at=now - timedelta(hours=2),
    )
    mail(
        session,
        acme,
        OutboxStatus.FAILED,
        attempts=1,
        last_error="550 yesterday's",
        created_at=now - timedelta(hours=30),
    )
    for _ in range(4):
        mail(session, acme, OutboxStatus.SENT, sent_at=now - timedelta(minutes=10), attempts=1)
    retry_at = now + timedelta(minutes=20)
    for _ in range(2):
        mail(
            session,
            acme,
            OutboxStatus.QUEUED,
            attempts=2,
            last_error="421 4.7.0 Try again later",
            next_attempt_at=retry_at,
            created_at=now - timedelta(minutes=30),
        )
    # Elsewhere's: 5 not tried, 1 retrying and 2 failed, whose errors name its subscribers.
    for _ in range(5):
        mail(session, elsewhere, OutboxStatus.QUEUED)
    for _ in range(2):
        mail(
            session,
            elsewhere,
            OutboxStatus.FAILED,
            attempts=1,
            last_error="550 <secret@elsewhere.test> unknown",
            created_at=now - timedelta(hours=1),
        )
    mail(
        session,
        elsewhere,
        OutboxStatus.QUEUED,
        attempts=1,
        last_error="452 <full@elsewhere.test> mailbox full",
        next_attempt_at=now + timedelta(minutes=5),
    )

    # Acme's webhook: one call given up on, one waiting to be tried again (the newest),
    # one that went, one that failed two days ago; Elsewhere's failing too.
    hook = webhook(session, acme, "https://hooks.acme.test/tidings")
    call(
        session,
        hook,
        OutboxStatus.FAILED,
        attempts=8,
        last_error="HTTP 500 from the receiver",
        created_at=now - timedelta(hours=3),
    )
    call(session, hook, OutboxStatus.SENT, attempts=1, delivered_at=now)
    call(
        session,
        hook,
        OutboxStatus.FAILED,
        attempts=8,
        last_error="old",
        created_at=now - timedelta(hours=30),
    )
    call(
        session,
        hook,
        OutboxStatus.QUEUED,
        attempts=2,
        last_error="timed out after 10 s",
        next_attempt_at=now + timedelta(minutes=2),
        created_at=now - timedelta(hours=1),
    )
    theirs = webhook(session, elsewhere, "https://hooks.elsewhere.test/secret")
    call(session, theirs, OutboxStatus.FAILED, attempts=8, last_error="HTTP 502 elsewhere")

    # Widget traffic: Acme's from two processes, some minutes sharing both; an hour and a
    # half ago (outside the hour); Elsewhere's in the same minutes, much larger.
    acme_rows = [
        (50, 120, 0, histogram(ms10=100, ms25=15, ms50=5)),
        (50, 80, 2, histogram(ms10=60, ms50=10, ms250=8, over=2)),
        (35, 200, 1, histogram(ms5=150, ms25=40, ms100=10)),
        (20, 90, 0, histogram(ms10=80, ms500=10)),
        (12, 64, 5, histogram(ms25=50, ms2500=14)),
        (5, 46, 0, histogram(ms10=46)),
    ]
    for minutes_ago, requests, errors, latency in acme_rows:
        traffic(session, acme, now - timedelta(minutes=minutes_ago), requests, errors, latency)
    traffic(session, acme, now - timedelta(minutes=90), 999, 99, histogram(over=999))
    for minutes_ago in (50, 35, 5):
        traffic(
            session,
            elsewhere,
            now - timedelta(minutes=minutes_ago),
            7777,
            777,
            histogram(over=7777),
        )

    # Scheduled two days ahead and gone live yesterday; a newer note published at once is
    # not scheduled; Elsewhere's scheduled note is newer still.
    scheduled = make_note(
        session, acme, status="scheduled", now=now - timedelta(days=2), title="Dark mode"
    )
    make_note(session, acme, title="Published on saving", now=now - timedelta(hours=1))
    make_note(
        session,
        elsewhere,
        status="scheduled",
        now=now - timedelta(days=1, hours=12),
        title="Theirs",
    )

    auth.login(world.owner.email)
    answer, tree = page(client)
    assert answer.status_code == 200
    body = text(tree)

    # The worker: alive, its heartbeat about 40 s old; both processes listed.
    assert figure(tree, "worker") == "Alive"
    age = re.search(r"heartbeat (\d+) s ago", body)
    assert age and 40 <= int(age.group(1)) <= 45
    workers = row_cells(tree, "workers-table")
    assert [cells[0] for cells in workers] == ["worker-host pid 101", "worker-host pid 202"]
    assert workers[1][2] == "2 h ago"
    assert figure(tree, "jobs") == "3"

    # Mail: Acme's counts, every product's, and Acme's newest error only.
    assert row_cells(tree, "outbox-table") == [
        ["Pending", "3", "8"],
        ["Retrying", "2", "3"],
        ["Paused", "0", "0"],
        ["Failed", "1", "3"],
    ]
    assert figure(tree, "mail") == "5"
    [error] = tree.xpath('//div[contains(@class, "mail-error")]')
    assert text(error.xpath('p[@class="last-error-text"]')[0]) == "421 4.7.0 Try again later"
    local = retry_at.astimezone(UTC).strftime("%H:%M")  # no zone cookie: UTC
    assert f"tried again at {local}" in text(error)

    # Webhooks: Acme's two failing calls of the last day, the newest error with its URL.
    assert [figure(tree, f"webhooks-{k}") for k in ("failing", "retrying", "failed")] == [
        "2",
        "1",
        "1",
    ]
    [hook_error] = tree.xpath('//div[contains(@class, "webhook-error")]')
    assert "timed out after 10 s" in text(hook_error)
    assert "https://hooks.acme.test/tidings" in text(hook_error)
    assert warnings(tree)["Webhook calls are failing"].startswith("2 calls of the last 24 hours")

    # The last scheduled note, linked, with when it went live.
    [link] = tree.xpath('//p[@class="scheduled-note"]/a')
    assert text(link) == "Dark mode"
    assert link.get("href") == f"/console/p/acme/notes/{scheduled.id}"
    went_live = scheduled.published_at.astimezone(UTC).strftime("%d %b, %H:%M")
    assert f"Went live at {went_live}, 24 h ago." in body

    # Traffic: the hour's totals from Acme's rows in it, as counted here.
    rows = acme_rows
    requests = sum(r[1] for r in rows)
    errors = sum(r[2] for r in rows)
    merged = [sum(r[3][i] for r in rows) for i in range(len(BOUNDS_MS) + 1)]
    share, low, high = wilson(errors, requests)
    assert figure(tree, "requests") == figure(tree, "traffic-requests") == f"{requests:,}"
    assert figure(tree, "traffic-per-minute") == f"{requests / 60:,.1f}"
    assert figure(tree, "traffic-p95") == p95(merged) == "≤ 250 ms"
    assert figure(tree, "traffic-errors") == f"{percent(share)} %" == "1.3 %"
    assert figure(tree, "traffic-errors-ci") == f"95 % CI {percent(low)}–{percent(high)} %"
    table = {cells[0]: cells[1:] for cells in row_cells(tree, "traffic-table")}
    assert len(table) == 60
    per_minute: dict[str, list[int]] = {}
    for minutes_ago, r, e, _ in rows:
        label = minute(now - timedelta(minutes=minutes_ago)).strftime("%H:%M")
        before = per_minute.get(label, [0, 0])
        per_minute[label] = [before[0] + r, before[1] + e]
    assert {
        k: [int(v.replace(",", "")) for v in cells]
        for k, cells in table.items()
        if cells != ["0", "0"]
    } == per_minute
    [chart] = tree.xpath('//svg[contains(@class, "chart-bar")]')
    assert len(chart.xpath('.//g[@class="chart-bars"]/rect')) == 60
    assert f"{requests:,} requests, {errors:,} answered with an error" in chart.get("aria-label")

    # Nothing of Elsewhere's: its mail errors, webhook, traffic or note.
    for theirs_text in ("elsewhere.test", "HTTP 502", "7,777", "7777", "Theirs"):
        assert theirs_text not in body, theirs_text


def test_times_are_in_the_members_zone(client, auth: AuthActions, session, world: World) -> None:
    now = utcnow()
    beat(session, "worker-host:1:1", now - timedelta(seconds=20))
    traffic(session, world.product, now - timedelta(minutes=30), 42, 0, histogram(ms10=42))
    auth.login(world.owner.email)
    client.set_cookie("tz", "Asia/Kolkata")
    _, tree = page(client)
    table = {cells[0]: cells[1] for cells in row_cells(tree, "traffic-table")}
    kolkata = minute(now - timedelta(minutes=30)).astimezone(ZoneInfo("Asia/Kolkata"))
    assert table[kolkata.strftime("%H:%M")] == "42"
    assert "(Asia/Kolkata)" in text(tree.xpath('//p[@class="status-lede"]')[0])


# The warnings at the top ---------------------------------------------------------------------


def test_all_clear_when_nothing_is_wrong(client, auth: AuthActions, session, world) -> None:
    beat(session, "worker-host:1:1", utcnow() - timedelta(seconds=30))
    mail(session, world.product, OutboxStatus.SENT, sent_at=utcnow(), attempts=1)
    auth.login(world.owner.email)
    _, tree = page(client)
    assert warnings(tree) == {}
    assert text(tree.xpath('//p[contains(@class, "status-ok")]')[0]).startswith("All clear")
    assert "No alert yet." in text(tree)


def test_no_worker_ever(client, auth: AuthActions, world) -> None:
    auth.login(world.owner.email)
    _, tree = page(client)
    assert figure(tree, "worker") == "Never ran"
    assert "start it with flask worker" in warnings(tree)["No worker has run yet"]


def test_a_silent_worker_is_said_first_and_the_owners_are_told(
    client, auth: AuthActions, session, world: World
) -> None:
    now = utcnow()
    beat(session, "worker-host:1:1", now - timedelta(minutes=12))
    auth.login(world.owner.email)
    _, tree = page(client)
    said = warnings(tree)
    assert list(said)[0] == "The worker is silent"
    assert said["The worker is silent"].startswith("Its last heartbeat was 12 min ago")
    assert "The owners were e-mailed at" in said["The worker is silent"]
    assert figure(tree, "worker") == "Silent"
    # Opening the page ran the watch: the alert is open, and each owner's mail queued.
    [alert] = row_cells(tree, "alerts-table")
    assert alert[0] == "Worker silent Open" and alert[3] == "still open"
    session.expire_all()
    owners = session.scalar(select(func.count()).where(OutboxMessage.kind == OutboxKind.ALERT))
    assert owners == 2  # Acme's owner and Elsewhere's


def test_mail_failing_is_warned_of_and_the_owners_told_after_15_minutes(
    client, auth: AuthActions, session, world: World
) -> None:
    now = utcnow()
    beat(session, "worker-host:1:1", now - timedelta(seconds=10))
    mail(session, world.product, OutboxStatus.QUEUED, attempts=1, last_error="421 busy")
    auth.login(world.owner.email)
    _, tree = page(client)
    said = warnings(tree)["Mail is failing"]
    assert "The owners are e-mailed at" in said and "if it lasts" in said
    # Failing for 20 minutes already, no mail sent since: the owners are told.
    session.execute(update(Alert).values(failing_since=now - timedelta(minutes=20)))
    session.commit()
    _, tree = page(client)
    assert "The owners were e-mailed at" in warnings(tree)["Mail is failing"]
    [alert] = row_cells(tree, "alerts-table")
    assert alert[0] == "Mail failing Open" and re.fullmatch(r"\d\d:\d\d", alert[2])


def test_an_alert_fine_again_stays_open_until_ten_minutes_have_passed(
    client, auth: AuthActions, session, world: World
) -> None:
    """Mail went out again 3 minutes ago: the alert is open until it has been fine for 10,
    when the owners hear it recovered; nothing says mail is failing meanwhile."""
    now = utcnow()
    beat(session, "worker-host:1:1", now - timedelta(seconds=10))
    mail(session, world.product, OutboxStatus.SENT, sent_at=now - timedelta(minutes=3))
    session.add(
        Alert(
            kind="mail_failing",
            failing_since=now - timedelta(minutes=40),
            alerted_at=now - timedelta(minutes=25),
            recovered_at=now - timedelta(minutes=3),
        )
    )
    session.commit()
    auth.login(world.owner.email)
    _, tree = page(client)
    assert "Mail is failing" not in warnings(tree)
    [alert] = row_cells(tree, "alerts-table")
    assert alert[0] == "Mail failing Open"
    # Times in UTC: the owner set no zone.
    ended, closes = now - timedelta(minutes=3), now + timedelta(minutes=7)
    assert alert[3] == f"{ended:%H:%M} (closes at {closes:%H:%M} if it stays so)"


def test_a_pause_is_said_with_the_servers_answer(
    client, auth: AuthActions, session, world: World
) -> None:
    now = utcnow()
    beat(session, "worker-host:1:1", now - timedelta(seconds=10))
    mail(
        session,
        world.product,
        OutboxStatus.QUEUED,
        paused_at=now - timedelta(minutes=3),
        last_error="530 authentication required",
        next_attempt_at=now + timedelta(minutes=3),
    )
    auth.login(world.owner.email)
    _, tree = page(client)
    assert "530 authentication required" in warnings(tree)["Sending is paused"]
    assert row_cells(tree, "outbox-table")[:3] == [
        ["Pending", "0", "0"],
        ["Retrying", "0", "0"],
        ["Paused", "1", "1"],
    ]


def test_a_widget_gone_quiet_at_its_usual_hour_is_warned_of(
    client, auth: AuthActions, session, world: World
) -> None:
    now = utcnow()
    beat(session, "worker-host:1:1", now - timedelta(seconds=10))
    # Requests at this time of day on 5 of the last 7 days, none in the last hour.
    for days_ago in (1, 2, 3, 5, 6):
        at = now - timedelta(days=days_ago, minutes=30)
        traffic(session, world.product, at, 30, 0, histogram(ms10=30))
    # Elsewhere's widget is busy now: it does not count for Acme.
    traffic(session, world.other, now - timedelta(minutes=20), 50, 0, histogram(ms10=50))
    auth.login(world.owner.email)
    _, tree = page(client)
    said = warnings(tree)["Data stopped arriving"]
    assert said.startswith("No widget request in the last") and "5 of the previous 7 days" in said
    assert figure(tree, "requests") == "0"


def test_a_widget_without_a_usual_hour_is_not_warned_of(
    client, auth: AuthActions, session, world: World
) -> None:
    now = utcnow()
    beat(session, "worker-host:1:1", now - timedelta(seconds=10))
    for days_ago in (1, 2, 3, 5):  # four days of seven: not usual
        at = now - timedelta(days=days_ago, minutes=30)
        traffic(session, world.product, at, 30, 0, histogram(ms10=30))
    auth.login(world.owner.email)
    _, tree = page(client)
    assert "Data stopped arriving" not in warnings(tree)


def test_a_help_desk_silent_for_longer_than_usual_is_warned_of(
    client, auth: AuthActions, session, world: World
) -> None:
    now = utcnow()
    beat(session, "worker-host:1:1", now - timedelta(seconds=10))
    session.add(
        SupportConnection(
            product_id=world.product.id,
            desk=SupportDesk.ZENDESK,
            source="zendesk",
            token="t",
            secret="s",
        )
    )
    # Twelve tickets two hours apart, the newest a day ago: a day is longer than any gap.
    for i in range(12):
        session.add(
            Ticket(
                product_id=world.product.id,
                source="zendesk",
                external_id=str(i),
                created_at=now - timedelta(days=1, hours=2 * i),
            )
        )
    session.commit()
    auth.login(world.owner.email)
    client.set_cookie("tz", "Asia/Kolkata")
    _, tree = page(client)
    said = warnings(tree)["Data stopped arriving"]
    # The newest ticket's time in the member's zone, as every time on the page.
    newest = (now - timedelta(days=1)).astimezone(ZoneInfo("Asia/Kolkata"))
    assert said.startswith(
        f"No ticket from Zendesk (zendesk) since {newest:%d %b, %H:%M}, 24 h ago"
    )
    # Two hours between tickets, give or take SQLite's julianday rounding.
    assert re.search(r"\(at most (2 h|1 h 59 min)\)", said) and "UTC" not in said


# The page holds up -------------------------------------------------------------------------------


def test_the_page_is_drawn_when_the_watch_fails(
    client, auth: AuthActions, session, world: World, monkeypatch, caplog
) -> None:
    """The page is how an owner finds out that something is wrong: a watch that fails (the
    database refusing the alert's write, say) is logged, and the figures shown."""

    def broken(*args, **kwargs):
        raise RuntimeError("the watch broke")

    monkeypatch.setattr(monitoring, "watch", broken)
    beat(session, "worker-host:1:1", utcnow() - timedelta(minutes=12))
    mail(session, world.product, OutboxStatus.QUEUED)
    auth.login(world.owner.email)
    answer, tree = page(client)
    assert answer.status_code == 200
    assert figure(tree, "worker") == "Silent"
    assert row_cells(tree, "outbox-table")[0] == ["Pending", "1", "1"]
    assert "watching from the web failed" in caplog.text
    assert "the watch broke" in caplog.text


# Alert mail -------------------------------------------------------------------------------------


def test_alert_mail_to_the_team_is_no_products_mail(
    client, auth: AuthActions, session, world: World
) -> None:
    """Alert mail is queued under the lowest id of the products its owner owns, but it
    belongs to none: the product's and every product's figures leave it out, its errors
    (which name owners) are not the product's, and a line beside the table counts it."""
    now = utcnow()
    beat(session, "worker-host:1:1", now - timedelta(seconds=10))
    mail(session, world.product, OutboxStatus.QUEUED)
    # To Acme's owner (Acme is their lowest product) and Elsewhere's; none due now, so the
    # page's watch sends nothing while the test reads it.
    alert_rows = [
        (world.owner, OutboxStatus.QUEUED, 0, None, "pending"),
        (world.owner, OutboxStatus.QUEUED, 1, "421 <owner@example.com> busy", "retrying"),
        (world.other_owner, OutboxStatus.QUEUED, 0, None, "pending"),
        (world.owner, OutboxStatus.FAILED, 8, "550 <owner@example.com> gone", "failed"),
    ]
    for member, status, attempts, error, _sort in alert_rows:
        lowest = world.product if member is world.owner else world.other
        make_outbox_message(
            session,
            lowest,
            status,
            member=member,
            attempts=attempts,
            last_error=error,
            payload={"alert_id": 1, "state": "down"},
            next_attempt_at=now + timedelta(hours=1),
        )
    auth.login(world.owner.email)
    _, tree = page(client)
    assert row_cells(tree, "outbox-table") == [
        ["Pending", "1", "1"],
        ["Retrying", "0", "0"],
        ["Paused", "0", "0"],
        ["Failed", "0", "0"],
    ]
    assert figure(tree, "mail") == "1"
    sorts = [row[4] for row in alert_rows]
    [team] = tree.xpath('//p[contains(@class, "outbox-team")]')
    assert text(team) == (
        f"Alert mail to the owners, in neither column: {sorts.count('pending')} pending, "
        f"{sorts.count('retrying')} retrying, 0 paused, {sorts.count('failed')} failed."
    )
    assert not tree.xpath('//div[contains(@class, "mail-error")]')
    assert "<owner@example.com>" not in text(tree)
    assert "Mail is failing" not in warnings(tree)


# Figures from one moment ----------------------------------------------------------------------


def test_a_products_mail_and_every_products_are_counted_at_one_moment(
    app, client, auth: AuthActions, session, world: World
) -> None:
    """A message sent while the page counts is in both columns or in neither: Acme's
    figures are never more than every product's together. The message is sent (from
    another connection) right after the page's first count of mail by product."""
    beat(session, "worker-host:1:1", utcnow() - timedelta(seconds=10))
    message = mail(session, world.product, OutboxStatus.QUEUED)
    engine = db.engine
    sent: list[str] = []

    def send_it(conn, cursor, statement: str, *args) -> None:
        if sent or not statement.lstrip().upper().startswith("SELECT"):
            return
        if "outbox_message.product_id" not in statement:
            return
        sent.append(statement)
        with engine.connect() as other:
            other.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message.id)
                .values(status=OutboxStatus.SENT, sent_at=utcnow())
            )
            other.commit()

    auth.login(world.owner.email)
    event.listen(engine, "after_cursor_execute", send_it)
    try:
        _, tree = page(client)
    finally:
        event.remove(engine, "after_cursor_execute", send_it)
    assert sent, "the page counted mail by product"
    [pending] = [cells for cells in row_cells(tree, "outbox-table") if cells[0] == "Pending"]
    acme, everyone = int(pending[1]), int(pending[2])
    assert acme <= everyone
    assert (acme, everyone) == (1, 1)  # the one statement ran before the message went
