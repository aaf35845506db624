"""Console → Status in headless Chromium on the demo as ``flask demo`` loads it: first as it
is (no worker has ever run beside the browser tests' server), then with a worker's
heartbeat, then in trouble (the worker silent, mail and a webhook failing). The figures
are counted again here in plain SQL over the demo's tables, for the hour the page says it
looked at; nothing is wider than a desktop or a phone; and the screenshots go to
instance/screenshots/ to be looked at after a run.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from announcements.models import (
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Subscriber,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WorkerHeartbeat,
    utcnow,
)
from app.extensions import db
from tests.browser import DESKTOP, PHONE, SCREENSHOTS, assert_fits
from tests.test_browser_console import log_in
from tests.test_browser_support import shoot, stored, words

pytestmark = pytest.mark.browser


def count_lumen(live_app, now: datetime) -> dict[str, Any]:
    """Lumen's widget traffic in the 60 whole minutes before ``now`` and its mail waiting,
    in SQL written here."""
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=60)
    with live_app.app_context():
        session = db.session()
        lumen = session.scalar(text("SELECT id FROM product WHERE slug = 'lumen'"))
        minutes = session.execute(
            text(
                "SELECT minute, SUM(requests), SUM(errors) FROM traffic_minute"
                " WHERE product_id = :p AND minute >= :start AND minute < :end"
                " GROUP BY minute"
            ),
            {"p": lumen, "start": stored(start), "end": stored(end)},
        ).all()
        waiting = session.scalar(
            text(
                "SELECT COUNT(*) FROM outbox_message"
                " WHERE product_id = :p AND status IN ('queued', 'sending')"
                " AND kind != 'alert'"  # alert mail is the team's, no product's
            ),
            {"p": lumen},
        )
        db.session.remove()
    per_minute = {
        datetime.fromisoformat(str(m)).replace(tzinfo=UTC).strftime("%H:%M"): (int(r), int(e))
        for m, r, e in minutes
    }
    return {
        "per_minute": per_minute,
        "requests": sum(r for r, _ in per_minute.values()),
        "errors": sum(e for _, e in per_minute.values()),
        "waiting": waiting,
    }


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_status_on_the_demo(page, live_app, live_server, viewport) -> None:
    label = "phone" if viewport is PHONE else "desktop"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def fits_and_shoot(name: str) -> None:
        # Taken first, so a page that does not fit can be looked at.
        shoot(page, f"status-{name}-{label}.png")
        assert_fits(page, name)

    def figure(name: str) -> str:
        return words(page.locator(f"[data-figure='{name}']"))

    log_in(page, live_server, "demo@example.com")
    with live_app.app_context():
        db.session.execute(text("DELETE FROM worker_heartbeat"))
        db.session.commit()
    page.goto(f"{live_server}/console/p/lumen/status")

    # (1) No worker beside the tests' server: the page says so first.
    top = page.locator(".status-attention li").first
    assert words(top.locator("strong")) == "No worker has run yet"
    assert figure("worker") == "Never ran"
    fits_and_shoot("no-worker")

    # (2) A worker's heartbeat, as `flask worker` writes it every minute.
    with live_app.app_context():
        now = utcnow()
        db.session.add(
            WorkerHeartbeat(
                name="demo-host:4242:981234",
                started_at=now - timedelta(hours=3, minutes=12),
                beat_at=now - timedelta(seconds=25),
            )
        )
        db.session.commit()
    page.reload()
    assert figure("worker") == "Alive"
    assert "No worker has run yet" not in words(page.locator("main"))
    checked = page.locator("p.status-lede time").get_attribute("datetime")
    assert checked
    counted = count_lumen(live_app, datetime.fromisoformat(checked))
    assert counted["requests"] > 0, "the demo has an hour of widget traffic"
    assert figure("requests") == figure("traffic-requests") == f"{counted['requests']:,}"
    assert figure("traffic-per-minute") == f"{counted['requests'] / 60:,.1f}"
    assert figure("mail") == f"{counted['waiting']:,}"
    assert re.fullmatch(r"(≤ [\d.]+ m?s|over 5 s)", figure("traffic-p95"))

    # The chart has a bar a minute, and the numbers beside it are the minutes counted here.
    assert page.locator("svg.chart-bar g.chart-bars rect").count() == 60
    page.get_by_text("Show the numbers").click()
    rows = page.locator("table.traffic-table tbody tr")
    assert rows.count() == 60
    shown = {}
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td")
        requests, errors = (int(words(cells.nth(j)).replace(",", "")) for j in (1, 2))
        if requests or errors:
            shown[words(cells.nth(0))] = (requests, errors)
    assert shown == counted["per_minute"]
    page.get_by_text("Show the numbers").click()
    fits_and_shoot("running")

    # (3) Trouble: the worker silent for 12 minutes, a subscriber's server refusing for now,
    # a webhook's receiver down.
    with live_app.app_context():
        now = utcnow()
        db.session.execute(
            update(WorkerHeartbeat).values(beat_at=now - timedelta(minutes=12, seconds=5))
        )
        lumen = db.session.scalar(select(Product).where(Product.slug == "lumen"))
        assert lumen is not None
        subscriber = db.session.scalar(
            select(Subscriber.id).where(Subscriber.product_id == lumen.id)
        )
        db.session.add(
            OutboxMessage(
                product_id=lumen.id,
                subscriber_id=subscriber,
                kind=OutboxKind.CONFIRM,
                attempts=2,
                last_error="451 4.7.1 Greylisted, please try again later",
                next_attempt_at=now + timedelta(minutes=4),
                created_at=now - timedelta(minutes=9),
            )
        )
        hook = Webhook(
            product_id=lumen.id,
            url="https://hooks.slack.com/services/T000/B000/XXXX",
            secret="s",
            events=["note.published"],
        )
        db.session.add(hook)
        db.session.flush()
        db.session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event=WebhookEvent.PUBLISHED,
                status=OutboxStatus.FAILED,
                attempts=8,
                response_status=503,
                last_error="HTTP 503: Service Unavailable",
                created_at=now - timedelta(hours=2),
            )
        )
        db.session.commit()
    page.reload()
    said = page.locator(".status-attention li")
    assert words(said.first.locator("strong")) == "The worker is silent"
    assert "Its last heartbeat was 12 min ago" in words(said.first)
    assert "Webhook calls are failing" in words(page.locator(".status-attention"))
    assert figure("worker") == "Silent"
    alerts = page.locator("table.alerts-table tr.alert-open th").all_inner_texts()
    assert sorted(" ".join(a.split()) for a in alerts) == [
        "Mail failing Open",
        "Worker silent Open",
    ]
    assert "Greylisted" in words(page.locator(".mail-error"))
    fits_and_shoot("trouble")
