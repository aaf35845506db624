"""Support: the help desks that send a product's tickets in, and what the tickets say
about each release (Support impact).

The impact pages read the worker's roll-up (``support_impact.report``), so they cost a few
rows however many users a product has; "Refresh now" asks the worker to count again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import (
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from announcements import holdback, notices, reads, support_desks, support_impact, tickets
from announcements.audit import owned
from announcements.help import note_counts
from announcements.mailing_list import csv_safe
from announcements.models import (
    Note,
    Product,
    Role,
    SupportConnection,
    SupportDesk,
    utcnow,
)
from app.auth import current_member, role_required
from app.console import bp, charts, timezones
from app.console.charts import Figure, day_label, number
from app.console.common import csv_download, refused
from app.console.forms import ConnectForm, SecretForm
from app.extensions import db, limiter
from app.mail import jobs


@bp.app_template_filter("iso_local")
def _iso_local(value: str | None, fmt: str = "%d %b %Y, %H:%M") -> str:
    """A time from the roll-up's figures (ISO 8601), in the member's zone."""
    return timezones.local(datetime.fromisoformat(value), fmt) if value else ""


# Impact ------------------------------------------------------------------------------------


@bp.get("/p/<slug>/support/impact", endpoint="support_impact")
@role_required(Role.VIEWER)
def impact_page(product: Product) -> ResponseReturnValue:
    """Per release, newest first: who saw its notes, and the tickets readers and
    non-readers opened after."""
    releases = support_impact.report(db.session(), product)
    computed_at = min((r.computed_at for r in releases), default=None)
    return render_template(
        "console/support_impact.html",
        product=product,
        releases=releases,
        # The stalest figure on the page says how fresh the page is.
        computed_at=computed_at,
        computed_today=computed_at is not None and timezones.same_day(computed_at, utcnow()),
        connected=bool(_connections(product)),
        can_refresh=g.role.allows(Role.EDITOR),
        not_enough=support_impact.NOT_ENOUGH_DATA,
    )


def _product_key() -> str:
    return f"support-refresh:{(request.view_args or {}).get('slug')}"


# A recount reads every user of the product: one a minute per product, however many
# editors press the button, so nobody can keep the worker from sending mail. Counted
# after the role check, so nobody else can spend the product's minute.
@bp.post("/p/<slug>/support/impact/refresh")
@role_required(Role.EDITOR)
@limiter.limit("1 per minute", key_func=_product_key)
def support_refresh(product: Product) -> ResponseReturnValue:
    """Ask the worker to count the product's figures again now, not at the next hour."""
    if jobs.request_refresh(product.id):
        flash(_("Counting again: the new figures show here in a minute or two."), "success")
    else:
        flash(
            _("The worker cannot be reached: the figures are recounted within the hour."), "error"
        )
    return redirect(url_for("console.support_impact", slug=product.slug))


@bp.get("/p/<slug>/support/impact/notes/<id:note_id>")
@role_required(Role.VIEWER)
def support_note(product: Product, note_id: int) -> ResponseReturnValue:
    """One note's figures: its tickets day by day around publication, readers against
    non-readers, the hold-back experiment, how often it answered a user about to write
    in; for a notice, who has acknowledged it; and which group a given user is in."""
    note = owned(db.session(), Note, product, note_id)
    impact = support_impact.note_impact(db.session(), note)
    figures = impact.figures if impact is not None else None
    now = utcnow()
    lookup = request.args.get("user", "")
    groups, lookup_error = None, None
    if lookup.strip():
        lookup = lookup.strip()
        if len(lookup) > tickets.MAX_USER_ID_LENGTH or not reads.is_storable(lookup):
            lookup_error = _(
                "A user id is text of at most %(length)s characters.",
                length=tickets.MAX_USER_ID_LENGTH,
            )
        else:
            groups = support_impact.user_groups(db.session(), product, lookup, now=now)
    # The acknowledgements were counted by the roll-up: counting them reads every
    # exposed user, seconds at a million, too long for a page any member may open.
    published = note.published_at
    asked = note.requires_acknowledgement and published is not None and published <= now
    is_owner = g.role.allows(Role.OWNER)
    can_export = asked and is_owner
    return render_template(
        "console/support_note.html",
        product=product,
        note=note,
        notice=notices.status(db.session(), note, impact) if asked else None,
        escalated=notices.escalated(db.session(), note) if asked else [],
        escalates_at=notices.escalates_at(note),
        now=now,
        attribute_names=notices.attribute_names(db.session(), note) if can_export else [],
        can_export=can_export,
        is_owner=is_owner,
        help_counts=note_counts(db.session(), product.id, [note.id])[note.id],
        # What users typed is theirs: owners only, as the list of who has not acknowledged.
        help_queries=support_impact.help_queries(db.session(), note) if is_owner else [],
        f=figures,
        daily=daily_figure(figures) if figures else None,
        readers=(
            interval_figure(
                _("Tickets per 1,000 readers and non-readers"),
                [
                    (_("Readers"), figures["rate_readers"]),
                    (_("Non-readers"), figures["rate_non_readers"]),
                ],
            )
            if figures
            else None
        ),
        holdback=(
            interval_figure(
                _("Tickets per 1,000 users told and held back"),
                [
                    (_("Told"), figures["holdback"]["treated"]),
                    (_("Held back"), figures["holdback"]["control"]),
                ],
            )
            if figures and figures["holdback"]
            else None
        ),
        lookup=lookup,
        lookup_error=lookup_error,
        groups=groups,
        can_refresh=g.role.allows(Role.EDITOR),
        not_enough=support_impact.NOT_ENOUGH_DATA,
        max_holdback=holdback.MAX_HOLDBACK_PERCENT,
    ), 422 if lookup_error else 200


@bp.get("/p/<slug>/support/impact/notes/<id:note_id>/unacknowledged.csv")
@role_required(Role.OWNER)
def support_unacknowledged_csv(product: Product, note_id: int) -> ResponseReturnValue:
    """The users a notice went out to who have not acknowledged it, with the attributes
    chosen (``?attribute=plan&attribute=team``): the people to follow up with."""
    note = owned(db.session(), Note, product, note_id)
    page = url_for("console.support_note", slug=product.slug, note_id=note.id)
    with refused():
        lines = notices.export_unacknowledged(
            db.session(),
            note,
            request.args.getlist("attribute"),
            by=current_member(),
            now=utcnow(),
        )
        db.session.commit()  # the export is in the audit log before a line goes out
        filename = f"{product.slug}-note-{note.id}-not-acknowledged-{utcnow():%Y-%m-%d}.csv"
        return csv_download(lines, filename)
    return redirect(page + "#acknowledgements")


# The figures a chart draws, and the same said in words ------------------------------------


@dataclass(frozen=True)
class DayRow:
    label: str
    tickets: int
    period: str


@bp.app_template_filter("per_1000")
def per_1000(value: float | None) -> str:
    """A rate per 1,000 as the pages write it: two decimals, a dash for none."""
    return "—" if value is None else number(value, ",.2f")


def daily_figure(f: dict[str, Any]) -> Figure:
    """The daily tickets around a publication as bars, with a line where it went out and
    its window shaded: positions counted in days from the first day's start (UTC)."""
    days = [(date.fromisoformat(d["date"]), int(d["tickets"])) for d in f["daily"]]
    published = datetime.fromisoformat(f["published_at"]).astimezone(UTC)
    window_end = datetime.fromisoformat(f["window_end"]).astimezone(UTC)
    title = _daily_title(f)
    if not days:
        return Figure(
            charts.bar_chart([], []), title, _("%(title)s: no days counted yet.", title=title)
        )
    start = datetime.combine(days[0][0], time.min, UTC)

    def in_days(moment: datetime) -> float:
        return (moment - start) / timedelta(days=1)

    chart = charts.bar_chart(
        [day_label(day) for day, _ in days],
        [count for _, count in days],
        marker=(in_days(published), _("Published %(day)s", day=day_label(published.date()))),
        band=(in_days(published), in_days(window_end)),
    )
    rows = [
        DayRow(
            day_label(day),
            count,
            "before"
            if day < published.date()
            else "published"
            if day == published.date()
            else "in the window",
        )
        for day, count in days
    ]
    before = sum(r.tickets for r in rows if r.period == "before")
    after = sum(r.tickets for r in rows if r.period != "before")
    busiest = max(rows, key=lambda r: r.tickets)
    summary = _(
        "%(title)s, %(first)s to %(last)s (UTC days): %(before)s tickets before publication "
        "on %(published)s, %(after)s from that day on; the most in one day, %(most)s, on "
        "%(busiest)s.",
        title=title,
        first=rows[0].label,
        last=rows[-1].label,
        before=number(before),
        published=day_label(published.date()),
        after=number(after),
        most=number(busiest.tickets),
        busiest=busiest.label,
    )
    return Figure(chart, title, summary, rows)


def _daily_title(f: dict[str, Any]) -> str:
    """The daily chart's title: its topics, and how far after publication it goes."""
    days, topics = f["window_days"], ", ".join(f["topics"])
    if f["window_open"]:
        if topics:
            return _(
                "Tickets per day about %(topics)s, %(days)s days before publication to today",
                topics=topics,
                days=days,
            )
        return _("Tickets per day, %(days)s days before publication to today", days=days)
    if topics:
        return _(
            "Tickets per day about %(topics)s, %(days)s days either side of publication",
            topics=topics,
            days=days,
        )
    return _("Tickets per day, %(days)s days either side of publication", days=days)


def interval_figure(title: str, groups: Sequence[tuple[str, dict[str, Any]]]) -> Figure:
    """Rates per 1,000 with their 95 % intervals as interval bars, one per group: short
    labels on the chart (it fits a phone), the same in full words for screen readers."""
    said = []
    intervals = []
    for label, r in groups:
        if r["per_1000"] is None:
            short = text = _("%(group)s: no users", group=label)
        else:
            rate, low, high = per_1000(r["per_1000"]), per_1000(r["low"]), per_1000(r["high"])
            short = _(
                "%(group)s: %(rate)s (%(low)s–%(high)s)", group=label, rate=rate, low=low, high=high
            )
            text = _(
                "%(group)s: %(rate)s per 1,000 (95 %% CI %(low)s–%(high)s)",
                group=label,
                rate=rate,
                low=low,
                high=high,
            )
        said.append(text)
        intervals.append(charts.Interval(short, r["per_1000"], r["low"], r["high"]))
    return Figure(charts.interval_chart(intervals), title, f"{title}. {'. '.join(said)}.")


# CSV ---------------------------------------------------------------------------------------

# Columns of the CSV export: paths into the figures, "a.b" for b inside a.
CSV_FIELDS = (
    "scope",
    "version",
    "note_id",
    "title",
    "published_at",
    "window_days",
    "window_end",
    "window_open",
    "topics",
    "exposed",
    "readers",
    "non_readers",
    "tickets_readers",
    "tickets_non_readers",
    "rate_readers.per_1000",
    "rate_readers.low",
    "rate_readers.high",
    "rate_non_readers.per_1000",
    "rate_non_readers.low",
    "rate_non_readers.high",
    "difference.percent_fewer",
    "difference.low",
    "difference.high",
    "verdict",
    "before.tickets",
    "before.active_users",
    "before.per_1000",
    "after.tickets",
    "after.active_users",
    "after.per_1000",
    "unmatched_tickets",
    "help.shown",
    "help.answered",
    "help.needs_help",
    "acknowledgement.exposed",
    "acknowledgement.acknowledged",
    "acknowledgement.not_yet",
    "holdback.percent",
    "holdback.treated.users",
    "holdback.treated.tickets",
    "holdback.treated.per_1000",
    "holdback.treated.low",
    "holdback.treated.high",
    "holdback.control.users",
    "holdback.control.tickets",
    "holdback.control.per_1000",
    "holdback.control.low",
    "holdback.control.high",
    "holdback.effect.percent_fewer",
    "holdback.effect.low",
    "holdback.effect.high",
    "holdback.verdict",
)


def _cell(figures: dict[str, Any], path: str) -> str:
    """One figure as CSV text: blank where the figures have none; text (titles, topics,
    sentences) kept from being read as a formula."""
    value: Any = figures
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        value = " ".join(value)
    return csv_safe(value) if isinstance(value, str) else str(value)


def impact_csv(releases: Sequence[support_impact.ReleaseImpact]) -> str:
    """Each release's figures, then each of its notes', one row each."""
    buffer = io.StringIO()
    # Every cell quoted: with ";" as the separator (some Excel locales) an unquoted title
    # "x;=cmd" would split into a cell starting with "=", past csv_safe.
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow([*(path.replace(".", "_") for path in CSV_FIELDS), "computed_at"])
    for release in releases:
        for figures in (release.figures, *release.notes):
            cells = [_cell(figures, path) for path in CSV_FIELDS]
            writer.writerow([*cells, release.computed_at.isoformat()])
    return buffer.getvalue()


@bp.get("/p/<slug>/support/impact.csv")
@role_required(Role.VIEWER)
def support_impact_csv(product: Product) -> ResponseReturnValue:
    """The impact figures, per release and per note, for a team's own reports."""
    releases = support_impact.report(db.session(), product)
    filename = f"{product.slug}-support-impact-{utcnow():%Y-%m-%d}.csv"
    return csv_download(impact_csv(releases), filename)


# Connections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    row: SupportConnection
    url: str
    steps: list[support_desks.Step]


def _connections(product: Product) -> list[SupportConnection]:
    return list(
        db.session.scalars(
            select(SupportConnection)
            .where(SupportConnection.product_id == product.id)
            .order_by(SupportConnection.created_at, SupportConnection.id)
        )
    )


def _connections_page(
    product: Product,
    form: ConnectForm,
    secret_errors: dict[int, str] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    base_url = current_app.config["BASE_URL"]
    return render_template(
        "console/support_connections.html",
        product=product,
        form=form,
        connections=[
            Connection(
                row, support_desks.inbound_url(base_url, row), support_desks.SETUP_STEPS[row.desk]
            )
            for row in _connections(product)
        ],
        desk_makes_secret=support_desks.DESK_MAKES_SECRET,
        SupportDesk=SupportDesk,
        secret_errors=secret_errors or {},
    ), status


@bp.route("/p/<slug>/support/connections", methods=["GET", "POST"])
@role_required(Role.OWNER)
def support_connections(product: Product) -> ResponseReturnValue:
    """The product's help-desk connections, each with its inbound URL and set-up steps."""
    form = ConnectForm()
    if form.validate_on_submit():
        with refused(form):
            connection = support_desks.connect(
                db.session(), product, form.desk.data or "", actor=current_member(), now=utcnow()
            )
            db.session.commit()
            flash(
                _(
                    "%(desk)s connected. Follow the steps beside it to start its deliveries.",
                    desk=connection.desk.label,
                ),
                "success",
            )
            return redirect(
                url_for("console.support_connections", slug=product.slug)
                + f"#connection-{connection.id}"
            )
    return _connections_page(product, form, status=422 if form.errors else 200)


@bp.post("/p/<slug>/support/connections/<id:connection_id>/secret")
@role_required(Role.OWNER)
def support_secret(product: Product, connection_id: int) -> ResponseReturnValue:
    """Keep the signing secret the desk made (Zendesk, Intercom)."""
    connection = owned(db.session(), SupportConnection, product, connection_id)
    form = SecretForm()
    if form.validate_on_submit():
        with refused(form):
            secret = form.secret.data or ""
            support_desks.set_secret(
                db.session(), connection, secret, actor=current_member(), now=utcnow()
            )
            db.session.commit()
            flash(
                _(
                    "Signing secret saved: %(desk)s deliveries are checked with it.",
                    desk=connection.desk.label,
                ),
                "success",
            )
            return redirect(
                url_for("console.support_connections", slug=product.slug)
                + f"#connection-{connection.id}"
            )
    errors = {connection_id: form.secret.errors[0]} if form.secret.errors else {}
    return _connections_page(product, ConnectForm(formdata=None), errors, status=422)


@bp.post("/p/<slug>/support/connections/<id:connection_id>/disconnect")
@role_required(Role.OWNER)
def support_disconnect(product: Product, connection_id: int) -> ResponseReturnValue:
    """Remove a connection: its URL stops working; its tickets stay and keep counting."""
    connection = owned(db.session(), SupportConnection, product, connection_id)
    label, source = connection.desk.label, connection.source
    support_desks.disconnect(db.session(), connection, actor=current_member(), now=utcnow())
    db.session.commit()
    flash(
        _(
            "%(desk)s (%(source)s) disconnected. Its tickets stay and keep counting.",
            desk=label,
            source=source,
        ),
        "success",
    )
    return redirect(url_for("console.support_connections", slug=product.slug))
