"""Demo data: a product with half a year of releases, so a newcomer sees Tidings working.

Loading is idempotent: products, notes and the demo account are matched by
their natural keys and only what is missing is created. The set includes a
draft, a scheduled note and an internal note, so every public view can be
checked for leaks.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select
from sqlalchemy.orm import Session

from announcements import accounts, images, mailing, services, subscriptions
from announcements.models import (
    Category,
    EndUser,
    Frequency,
    Note,
    NoteStatus,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Product,
    Reaction,
    ReadReceipt,
    Role,
    Subscriber,
    SubscriberStatus,
    TeamMember,
    outward_clause,
)
from announcements.services import Intent, NoteInput, ProductSettings
from app.public import media

DEMO_EMAIL = "demo@example.com"
DEMO_HOST_PRODUCT = "lumen"  # the product the demo host page embeds
DEMO_HOST_USER = "demo-user"
DEMO_READERS = 80
# What some demo readers said, by note title: so a note's page in the console has
# reactions and comments to show.
DEMO_COMMENTS: dict[str, list[tuple[str, str | None]]] = {
    "Funnels: see where people drop off": [("👍", "Finally! Can I export a funnel as CSV?")],
    "The classic dashboard is gone": [
        ("😕", "Where did my saved layouts from the old dashboard go?")
    ],
    "Dates in exported PDFs": [("👍", None)],
}


@dataclass(frozen=True)
class DemoNote:
    version: str
    days_ago: int | None  # None: not published by the demo
    category: Category
    title: str
    body_md: str
    is_important: bool = False
    is_internal: bool = False
    intent: Intent = Intent.PUBLISH


LUMEN_NOTES = [
    DemoNote(
        "2.0.0",
        182,
        Category.ADDED,
        "A new dashboard, rebuilt from the ground up",
        """\
Lumen 2.0 brings a dashboard that loads **three times faster** and works on any screen.

- Drag cards to arrange your own layout
- Pin the reports you open every morning
- Dark mode follows your system setting

![The new dashboard]({img}/dashboard.png)
""",
        is_important=True,
    ),
    DemoNote(
        "2.0.0",
        182,
        Category.REMOVED,
        "The classic dashboard is gone",
        """\
The classic dashboard from 1.x has been retired. Saved layouts were carried over
automatically; if something looks off, *Reset layout* in the card menu restores the default.
""",
    ),
    DemoNote(
        "2.1.0",
        168,
        Category.ADDED,
        "Export any chart as PNG or CSV",
        """\
Every chart now has an **Export** button. PNG exports keep your theme; CSV exports include
the raw numbers behind each point.
""",
    ),
    DemoNote(
        "2.1.0",
        168,
        Category.FIXED,
        "Time zones in weekly reports",
        """\
Weekly reports now start on Monday *in your workspace's time zone* instead of UTC.
""",
    ),
    DemoNote(
        "2.2.0",
        151,
        Category.CHANGED,
        "Faster search across all reports",
        """\
Search now matches report names, descriptions and the names of the metrics inside them.
Results appear as you type.
""",
    ),
    DemoNote(
        "2.2.0",
        151,
        Category.DEPRECATED,
        "API v1 will be retired in version 3.0",
        """\
The v1 REST API is deprecated and will stop answering in **Lumen 3.0**. Move to v2 — the
requests are the same, with cursors instead of page numbers:

```bash
curl -H "Authorization: Bearer $LUMEN_TOKEN" \\
  "https://api.lumen.example/v2/reports?cursor=…"
```

See the [migration guide](https://docs.lumen.example/api/v2-migration).
""",
        is_important=True,
    ),
    DemoNote(
        "2.3.0",
        137,
        Category.ADDED,
        "Alerts when a metric crosses a threshold",
        """\
Set an alert on any metric and Lumen tells you by email or Slack when it crosses the line.

1. Open a chart
2. Choose **Alert me** in the chart menu
3. Pick the threshold and where to be told
""",
    ),
    DemoNote(
        "2.4.0",
        121,
        Category.SECURITY,
        "Single sign-on with SAML and OIDC",
        """\
Workspaces on the Business plan can now require single sign-on. Okta, Azure AD and Google
Workspace are supported out of the box; any SAML 2.0 or OpenID Connect provider works.
""",
    ),
    DemoNote(
        "2.4.0",
        121,
        Category.FIXED,
        "CSV imports with semicolons",
        """\
CSV files that use `;` as the separator (common in Europe) are detected and imported
correctly.
""",
    ),
    DemoNote(
        "2.5.0",
        104,
        Category.CHANGED,
        "Clearer permissions for viewers",
        """\
| Role | View reports | Edit reports | Invite people |
|------|:---:|:---:|:---:|
| Viewer | ✓ | | |
| Editor | ✓ | ✓ | |
| Admin | ✓ | ✓ | ✓ |
""",
    ),
    DemoNote(
        "2.6.0",
        88,
        Category.ADDED,
        "Annotations on charts",
        """\
Mark a launch, an outage or a campaign right on the chart. Annotations are shared with your
team and appear on every chart of the same metric.
""",
    ),
    DemoNote(
        "2.7.0",
        70,
        Category.FIXED,
        "Dashboards no longer flicker on refresh",
        """\
Auto-refresh now updates cards in place instead of redrawing the whole page.
""",
    ),
    DemoNote(
        "2.8.0",
        52,
        Category.ADDED,
        "Scheduled reports by email",
        """\
Send any report to your team every day, week or month. Recipients don't need a Lumen account.
""",
    ),
    DemoNote(
        "2.9.0",
        36,
        Category.CHANGED,
        "A calmer, more readable chart palette",
        """\
Charts use a new colour palette designed for contrast and for colour-blind readers.
Your custom colours are unchanged.
""",
    ),
    DemoNote(
        "2.9.1",
        29,
        Category.SECURITY,
        "Session cookies now expire after 12 hours",
        """\
For your security, sessions now expire after 12 hours of inactivity. Single sign-on
workspaces can change this in **Settings → Security**.
""",
    ),
    DemoNote(
        "2.10.0",
        11,
        Category.ADDED,
        "Funnels: see where people drop off",
        """\
The new **Funnels** report shows, step by step, how many people move from one event to the next.

- Up to 10 steps per funnel
- Break down by any property
- Compare two date ranges side by side

![A funnel report]({img}/funnels.png)
""",
        is_important=True,
    ),
    DemoNote(
        "2.10.0",
        11,
        Category.FIXED,
        "Dates in exported PDFs",
        """\
Exported PDFs now show dates in your chosen format instead of ISO dates.
""",
    ),
    DemoNote(
        "2.10.0",
        11,
        Category.CHANGED,
        "Support runbook: funnels rollout",
        """\
**Internal.** Known limits for support: funnels over 90 days may time out on the Free plan.
Point customers to the date-range picker.
""",
        is_internal=True,
    ),
    DemoNote(
        "3.0.0-beta.1",
        4,
        Category.ADDED,
        "Try workspaces in the 3.0 beta",
        """\
Beta testers can now group dashboards into **workspaces** with their own members and
permissions. Tell us what you think with the reactions below.
""",
    ),
    DemoNote(
        "3.0.0",
        None,
        Category.REMOVED,
        "API v1 is retired",
        """\
As announced in 2.2.0, the v1 API no longer answers. Every v1 call returns `410 Gone`.
""",
        intent=Intent.SAVE,
    ),
    DemoNote(
        "3.0.0",
        None,
        Category.ADDED,
        "Workspaces for every team",
        """\
Workspaces leave the beta and are available on every plan.
""",
        is_important=True,
        intent=Intent.SCHEDULE,
    ),
]

LEDGER_NOTES = [
    DemoNote(
        "1.0.0",
        60,
        Category.ADDED,
        "Ledger is here",
        "Invoices, receipts and payouts in one place.",
    ),
    DemoNote(
        "1.1.0",
        20,
        Category.FIXED,
        "Rounding in multi-currency invoices",
        """\
Totals are now rounded once, at the end, so multi-currency invoices add up to the cent.
""",
    ),
]


def load(session: Session, *, password: str, now: datetime) -> dict[str, Any]:
    """Create whatever is missing of the demo data and return what scripts need to use it."""
    member = accounts.find_by_email(session, DEMO_EMAIL)
    if member is None:
        member = accounts.create_member(session, DEMO_EMAIL, password, name="Dana Demo")
    else:
        accounts.set_password(session, member, password)
        session.commit()
    products = [
        _product(session, member, "Lumen Analytics", "lumen", "#4f46e5", LUMEN_NOTES, now),
        _product(session, member, "Ledger", "ledger", "#0f766e", LEDGER_NOTES, now),
    ]
    _readers(session, products[0], now)
    _subscribers(session, products[0], now)
    return {
        "console": {"email": DEMO_EMAIL, "password": password},
        "products": [_describe(session, product, now) for product in products],
    }


def _product(
    session: Session,
    member: TeamMember,
    name: str,
    slug: str,
    accent: str,
    notes: list[DemoNote],
    now: datetime,
) -> Product:
    product = session.scalar(select(Product).where(Product.slug == slug))
    if product is None:
        product = services.create_product(
            session,
            ProductSettings(
                name=name,
                slug=slug,
                accent_color=accent,
                allowed_origins=("http://127.0.0.1:5000", "http://localhost:5000"),
            ),
            by=member,
            now=now - timedelta(days=200),
        )
    else:
        services.set_role(session, product, member, Role.OWNER, by=None, now=now)
    existing = {
        (version, title)
        for version, title in session.execute(
            select(Note.version, Note.title).where(Note.product_id == product.id)
        )
    }
    screenshots: dict[str, str] = {}
    for demo in notes:
        if (demo.version, demo.title) in existing:
            continue
        when = now - timedelta(days=demo.days_ago) if demo.days_ago is not None else now
        body_md = demo.body_md
        if "{img}/" in body_md:
            screenshots = screenshots or _screenshots(product, accent)
            for name, path in screenshots.items():
                body_md = body_md.replace("{img}/" + name, path)
        services.create_note(
            session,
            product,
            NoteInput(
                version=demo.version,
                title=demo.title,
                category=demo.category.value,
                body_md=body_md,
                is_important=demo.is_important,
                is_internal=demo.is_internal,
            ),
            intent=demo.intent,
            publish_at=now + timedelta(days=7) if demo.intent is Intent.SCHEDULE else None,
            by=member,
            now=when,
        )
    return product


# Screenshots ------------------------------------------------------------------------
# Drawn here and uploaded as an editor's would be, so the demo shows images that Tidings
# serves itself. The same drawing gives the same bytes, hence the same file: loading the
# demo again stores nothing new.


def _screenshots(product: Product, accent: str) -> dict[str, str]:
    """Store the demo's pictures for ``product``; their paths by the names notes use."""
    drawings = {"dashboard.png": _dashboard(accent), "funnels.png": _funnels(accent)}
    paths = {}
    for name, picture in drawings.items():
        out = io.BytesIO()
        picture.save(out, "PNG")
        stored = images.store(
            media.folder(), product.id, out.getvalue(), media_type="image/png", filename=name
        )
        paths[name] = media.path(product.id, stored.name)
    return paths


INK, MUTED, LINE, PAPER = "#0f172a", "#64748b", "#e2e8f0", "#f8fafc"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _dashboard(accent: str) -> Image.Image:
    """A dashboard: a sidebar, three numbers, a line chart of visits and a bar chart."""
    picture = Image.new("RGB", (960, 540), PAPER)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, 180, 540), fill=INK)
    draw.text((24, 24), "Lumen", fill="white", font=_font(22))
    for row, label in enumerate(["Dashboard", "Reports", "Funnels", "Exports", "Settings"]):
        if row == 0:
            draw.rounded_rectangle((12, 74, 168, 106), 6, fill=accent)
        draw.text(
            (26, 80 + row * 40), label, fill="white" if row == 0 else "#cbd5e1", font=_font(15)
        )
    for column, (label, value, change) in enumerate(
        [("Visitors", "48,210", "+12%"), ("Sign-ups", "1,932", "+8%"), ("Revenue", "$23.4k", "+5%")]
    ):
        left = 204 + column * 252
        draw.rounded_rectangle((left, 24, left + 236, 124), 10, fill="white", outline=LINE)
        draw.text((left + 18, 40), label, fill=MUTED, font=_font(14))
        draw.text((left + 18, 64), value, fill=INK, font=_font(30))
        draw.text((left + 170, 72), change, fill="#059669", font=_font(16))
    draw.rounded_rectangle((204, 144, 692, 516), 10, fill="white", outline=LINE)
    draw.text((222, 160), "Visitors, last 30 days", fill=INK, font=_font(16))
    rng = random.Random(2)  # noqa: S311 - the same curve every time, so the same file
    level, points = 300.0, []
    for day in range(30):
        level = max(60.0, min(320.0, level - rng.uniform(-4, 10)))
        points.append((230 + day * 15.5, 200 + level))
    for y in range(220, 500, 56):
        draw.line((222, y, 674, y), fill=LINE)
    draw.polygon([(230, 496), *points, (points[-1][0], 496)], fill="#eef2ff")
    draw.line(points, fill=accent, width=4, joint="curve")
    draw.rounded_rectangle((712, 144, 940, 516), 10, fill="white", outline=LINE)
    draw.text((730, 160), "Top reports", fill=INK, font=_font(16))
    for row, share in enumerate([0.92, 0.74, 0.55, 0.41, 0.28]):
        top = 206 + row * 58
        draw.text((730, top), f"Report {row + 1}", fill=MUTED, font=_font(13))
        draw.rounded_rectangle((730, top + 22, 922, top + 36), 7, fill="#f1f5f9")
        draw.rounded_rectangle((730, top + 22, 730 + int(192 * share), top + 36), 7, fill=accent)
    return picture


def _funnels(accent: str) -> Image.Image:
    """A funnel report: four steps, each bar as wide as the people who reached it."""
    picture = Image.new("RGB", (960, 420), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((32, 26), "Funnel: from visit to purchase", fill=INK, font=_font(24))
    draw.text((32, 62), "Last 30 days · 48,210 people", fill=MUTED, font=_font(15))
    steps = [("Visited", 48210), ("Signed up", 9642), ("Created a report", 5303), ("Paid", 1414)]
    for row, (label, people) in enumerate(steps):
        top = 110 + row * 74
        share = people / steps[0][1]
        draw.text((32, top + 16), label, fill=INK, font=_font(16))
        draw.rounded_rectangle((220, top, 860, top + 52), 8, fill="#f1f5f9")
        draw.rounded_rectangle(
            (220, top, 220 + max(16, int(640 * share)), top + 52), 8, fill=accent
        )
        draw.text((872, top + 8), f"{share:.0%}", fill=INK, font=_font(18))
        draw.text((872, top + 30), f"{people:,}", fill=MUTED, font=_font(12))
        if row:
            dropped = 1 - people / steps[row - 1][1]
            draw.text((236, top - 18), f"{dropped:.0%} dropped off", fill="#dc2626", font=_font(12))
    return picture


def _readers(session: Session, product: Product, now: datetime) -> None:
    """End users who read, and reacted to, the product's notes, so the console has numbers.

    Created once: if the first reader exists, the readers are already there.
    """
    first = session.scalar(
        select(EndUser.id).where(
            EndUser.product_id == product.id, EndUser.external_id == "demo-reader-01"
        )
    )
    if first is not None:
        return
    rng = random.Random(2026)  # noqa: S311 - demo data, the same every time, not a secret
    readers = [
        EndUser(
            product_id=product.id,
            external_id=f"demo-reader-{number:02d}",
            attributes={"plan": rng.choice(["free", "pro", "team"])},
            locale="en",
            app_version="2.10.0",
            first_seen_at=now - timedelta(days=190),
            last_seen_at=now - timedelta(hours=rng.randint(1, 72)),
        )
        for number in range(1, DEMO_READERS + 1)
    ]
    session.add_all(readers)
    session.flush()
    notes = session.scalars(select(Note).where(Note.product_id == product.id)).all()
    for note in notes:
        published = note.status_at(now) is NoteStatus.PUBLISHED
        if note.published_at is None or not published or note.is_internal:
            continue  # end users never see these
        share = rng.uniform(0.35, 0.8)
        for reader in readers:
            if rng.random() < share:
                read_at = note.published_at + timedelta(hours=rng.randint(1, 96))
                session.add(
                    ReadReceipt(
                        end_user_id=reader.id,
                        note_id=note.id,
                        read_at=min(read_at, now),
                        channel="widget",
                    )
                )
        for position, (reaction, comment) in enumerate(DEMO_COMMENTS.get(note.title, [])):
            when = note.published_at + timedelta(days=1)
            session.add(
                Reaction(
                    end_user_id=readers[position].id,
                    note_id=note.id,
                    reaction=reaction,
                    comment=comment,
                    created_at=when,
                    updated_at=when,
                )
            )
    session.commit()


# Demo subscribers: (name, status, frequency, categories).
DEMO_SUBSCRIBERS = [
    ("amara", SubscriberStatus.CONFIRMED, Frequency.EVERY, []),
    ("bruno", SubscriberStatus.CONFIRMED, Frequency.EVERY, []),
    ("chen", SubscriberStatus.CONFIRMED, Frequency.IMPORTANT, []),
    ("dita", SubscriberStatus.CONFIRMED, Frequency.DIGEST, []),
    ("elias", SubscriberStatus.CONFIRMED, Frequency.EVERY, ["Fixed", "Security"]),
    ("farah", SubscriberStatus.CONFIRMED, Frequency.IMPORTANT, []),
    ("goran", SubscriberStatus.CONFIRMED, Frequency.DIGEST, ["Added"]),
    ("hana", SubscriberStatus.CONFIRMED, Frequency.EVERY, []),
    ("ines", SubscriberStatus.PENDING, Frequency.EVERY, []),
    ("jonas", SubscriberStatus.PENDING, Frequency.IMPORTANT, []),
    ("kofi", SubscriberStatus.UNSUBSCRIBED, Frequency.EVERY, []),
    ("lena", SubscriberStatus.BOUNCED, Frequency.EVERY, []),
]


def _subscribers(session: Session, product: Product, now: datetime) -> None:
    """Email subscribers, and the messages of the latest important note marked as sent, so
    the subscribers page and a note's delivery show something. Created once."""
    if session.scalar(select(Subscriber.id).where(Subscriber.product_id == product.id)):
        return
    joined, left = now - timedelta(days=60), now - timedelta(days=5)
    subscribers = [
        Subscriber(
            product_id=product.id,
            email=f"{name}@example.com",
            status=status,
            frequency=frequency,
            categories=categories,
            locale="en",
            created_at=joined,
            confirmed_at=None if status is SubscriberStatus.PENDING else joined,
            unsubscribed_at=left if status is SubscriberStatus.UNSUBSCRIBED else None,
            last_digest_at=mailing.digest_slot(product, now),
            hard_bounces=3 if status is SubscriberStatus.BOUNCED else 0,
        )
        for name, status, frequency, categories in DEMO_SUBSCRIBERS
    ]
    session.add_all(subscribers)
    session.flush()
    latest = session.scalar(
        select(Note)
        .where(Note.product_id == product.id, Note.is_important.is_(True), outward_clause())
        .where(Note.published_at <= now)
        .order_by(Note.published_at.desc())
        .limit(1)
    )
    if latest is not None and latest.published_at is not None:
        sent_at = latest.published_at + timedelta(minutes=2)
        for subscriber in subscribers:
            if subscriber.status is SubscriberStatus.CONFIRMED and (
                subscriptions.Preferences.of(subscriber).wants(latest)
            ):
                session.add(
                    OutboxMessage(
                        product_id=product.id,
                        subscriber_id=subscriber.id,
                        note_id=latest.id,
                        kind=OutboxKind.NOTE,
                        status=OutboxStatus.SENT,
                        attempts=1,
                        created_at=latest.published_at,
                        next_attempt_at=latest.published_at,
                        sent_at=sent_at,
                    )
                )
    session.commit()


def _describe(session: Session, product: Product, now: datetime) -> dict[str, Any]:
    notes = session.scalars(
        select(Note).where(Note.product_id == product.id).order_by(Note.id)
    ).all()
    return {
        "slug": product.slug,
        "name": product.name,
        "widget_key": product.widget_key,
        "identity_secret": product.identity_secret,
        "notes": [
            {
                "id": note.id,
                "version": note.version,
                "title": note.title,
                "status": note.status_at(now).value,
                "internal": note.is_internal,
            }
            for note in notes
        ],
    }
