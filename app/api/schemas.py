"""The management API's requests and answers as pydantic models.

The same models validate each request and make the OpenAPI document
(``app.api.openapi``), so the document cannot drift from what the API accepts.
Requests are strict: a number where text belongs is an error, never coerced, and an
unknown field is refused rather than ignored.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from announcements import insights, note_rules, subscriptions, targeting, tickets, versions
from announcements.models import Category

StatusName = Literal["draft", "scheduled", "published", "archived"]


class _Input(BaseModel):
    """Anything a client sends: no NUL character in any text, which is never something a
    person wrote and which PostgreSQL cannot store."""

    @field_validator("*")
    @classmethod
    def _text(cls, value: Any) -> Any:
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise PydanticCustomError("nul", "Holds a character that is not text.")
        return value


def _in_utc(value: datetime) -> datetime:
    """The time in UTC, as it is stored. Near the calendar's ends an offset can move it past
    year 9999 or before year 1, where no datetime exists."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "Out of range: pick a time between the years 1 and 9999 in UTC."
        ) from None


# A time with its offset, read as UTC.
Moment = Annotated[AwareDatetime, AfterValidator(_in_utc)]


def _body_within_limit(body: str) -> str:
    problem = note_rules.body_problem(body)
    if problem:
        raise PydanticCustomError("body_size", problem)
    return body


# A note's fields, with the limits of the note rules (the body's is in bytes, which no
# JSON Schema keyword counts, so the rule itself checks it).
VersionText = Annotated[str, Field(min_length=1, max_length=note_rules.MAX_VERSION_LENGTH)]
Title = Annotated[str, Field(min_length=1, max_length=note_rules.MAX_TITLE_LENGTH)]
Body = Annotated[
    str,
    AfterValidator(_body_within_limit),
    Field(description=f"Markdown, up to {note_rules.MAX_BODY_BYTES // 1024} KB of UTF-8."),
]


Topics = Annotated[
    list[str],
    Field(
        description=f"Help-desk tags the note answers, up to {note_rules.MAX_TOPICS}, each 1 to "
        f"{note_rules.MAX_TOPIC_LENGTH} letters, digits, spaces, - _ . or :; stored "
        "casefolded, repeats dropped. A ticket counts towards the note when it has one of "
        "them as a tag or in its subject; with none, every ticket counts.",
        examples=[["export", "billing"]],
    ),
]
HoldbackPercent = Annotated[
    int,
    Field(
        ge=0,
        le=note_rules.MAX_HOLDBACK_PERCENT,
        description="The share of users held back as a control group: they get no popup, "
        "badge or email for the note during the product's attribution window. Fixed once "
        "the note is out: a different share for a published note is refused (422).",
    ),
]

RequiresAcknowledgement = Annotated[
    bool,
    Field(
        description="A notice users must acknowledge: the widget shows it as a dialog "
        "until they choose “I understand”. A note that holds users back can't require it."
    ),
]
EscalateAfterDays = Annotated[
    int,
    Field(
        ge=1,
        le=note_rules.MAX_ESCALATE_AFTER_DAYS,
        description="Days after publication after which users linked to a confirmed "
        "subscriber who have not acknowledged it are e-mailed it, once; null: never. "
        "Only with requires_acknowledgement.",
    ),
]


class _Request(_Input):
    model_config = ConfigDict(extra="forbid", strict=True)


class Condition(_Request):
    """One test on an end user's attributes, as the host sends them."""

    attribute: str = Field(pattern=f"^{targeting.ATTRIBUTE_PATTERN.pattern}$", examples=["plan"])
    # Checked by the audience rules themselves, which name the condition that is wrong.
    op: str = Field(json_schema_extra={"enum": list(targeting.OPERATORS)})
    value: str | float | list[str] | None = Field(
        default=None, description="A list for in and not_in; nothing for exists."
    )


class Audience(_Request):
    """Who a note concerns: users whose attributes meet all (or any) of the conditions."""

    match: Literal["all", "any"] = "all"
    conditions: list[Condition] = Field(default_factory=list, max_length=targeting.MAX_CONDITIONS)


class NoteCreate(_Request):
    """A new note: a draft, unless ``publish`` is true or ``publish_at`` is given."""

    version: VersionText = Field(examples=["2.4.0"])
    title: Title = Field(examples=["Export reports as PDF"])
    category: Category
    body_md: Body = ""
    important: bool = Field(default=False, description="Opens as a popup in the widget.")
    internal: bool = Field(default=False, description="Only the team sees it.")
    audience: Audience | None = Field(
        default=None, description="Who the note concerns; null: everyone."
    )
    publish: bool = Field(default=False, description="Publish now.")
    publish_at: Moment | None = Field(default=None, description="Publish then.")
    expires_at: Moment | None = None
    email_subscribers: bool | None = Field(
        default=None, description="Email subscribers when it goes live; null: if important."
    )
    support_topics: Topics = Field(default_factory=list)
    holdback_percent: HoldbackPercent = 0
    requires_acknowledgement: RequiresAcknowledgement = False
    escalate_after_days: EscalateAfterDays | None = None


class NoteUpdate(_Request):
    """Only the fields sent change."""

    version: VersionText | None = None
    title: Title | None = None
    category: Category | None = None
    body_md: Body | None = None
    important: bool | None = None
    internal: bool | None = None
    audience: Audience | None = None
    publish: bool = False
    publish_at: Moment | None = None
    expires_at: Moment | None = None
    email_subscribers: bool | None = None
    support_topics: Topics | None = None
    holdback_percent: HoldbackPercent | None = None
    requires_acknowledgement: RequiresAcknowledgement | None = None
    escalate_after_days: EscalateAfterDays | None = Field(
        default=None, description="null clears it: never e-mailed."
    )


class NoteQuery(_Input):
    """Filters and paging for the note list (query arguments)."""

    model_config = ConfigDict(extra="ignore")

    status: StatusName | None = None
    version: str | None = Field(default=None, max_length=note_rules.MAX_VERSION_LENGTH)
    category: Category | None = None
    cursor: str | None = Field(default=None, max_length=64, description="From next_cursor.")
    limit: int = Field(default=50, ge=1, le=100)

    @field_validator("version")
    @classmethod
    def _a_version(cls, value: str | None) -> str | None:
        if value is not None and not versions.is_valid(value.strip()):
            raise PydanticCustomError("version", "Not a version, such as 2.4.0.")
        return value


class SubscriberQuery(_Input):
    model_config = ConfigDict(extra="ignore")

    status: Literal["pending", "confirmed", "unsubscribed", "bounced"] | None = None
    cursor: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=50, ge=1, le=100)


class ImportForm(_Input):
    """The form fields sent beside the changelog ``file``."""

    model_config = ConfigDict(extra="ignore")

    publish: bool = Field(default=False, description="Publish the notes at their dates.")
    dry_run: bool = Field(default=False, description="Only report what would change.")
    unreleased_as: str | None = Field(
        default=None, max_length=64, description="Import [Unreleased] as this version."
    )


class Note(BaseModel):
    id: int
    version: str
    title: str
    category: Category
    body_md: str
    html: str = Field(description="The body as sanitised HTML.")
    important: bool
    internal: bool
    audience: dict[str, Any] | None
    email_subscribers: bool
    support_topics: list[str]
    holdback_percent: int
    requires_acknowledgement: bool
    escalate_after_days: int | None
    status: StatusName
    published_at: datetime | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    url: str | None = Field(description="Its public page, once it is published.")


class NoteList(BaseModel):
    notes: list[Note]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


# Translations (GET/PUT/DELETE /notes/<id>/translations/<locale>): a note's title and body
# in another of its product's languages; ``announcements.translations`` says how each is
# kept.


class TranslationWrite(_Request):
    """A note's translation, a draft unless ``status`` is published."""

    title: Title = Field(examples=["Exporter des rapports en PDF"])
    body_md: Body = ""
    status: Literal["draft", "published"] = Field(
        default="draft",
        description="A draft is never shown to end users; published (again) means made "
        "from the note's current text, which clears outdated.",
    )
    announce: bool = Field(
        default=False,
        description="With published: also e-mail it to confirmed subscribers of this "
        "language who have not read the note. Readers who read it are not told again.",
    )


class SourceChange(BaseModel):
    """A part of the note's own text that changed since the translation was published."""

    field: Literal["title", "body_md"]
    before: str = Field(description="The note's text the translation was made from.")
    after: str = Field(description="The note's text now.")
    diff: list[str] = Field(description="A unified diff of the two, one line each.")


class Translation(BaseModel):
    locale: str = Field(examples=["fr-CA"])
    title: str
    body_md: str
    html: str = Field(description="The body as sanitised HTML.")
    status: Literal["draft", "published", "outdated"] = Field(
        description="outdated: published, but the note's own text changed since; it is "
        "still shown to readers of its language."
    )
    source_changed: list[SourceChange] | None = Field(
        description="What changed in the note's text; null unless outdated."
    )
    updated_at: datetime
    published_at: datetime | None


class TranslationState(BaseModel):
    locale: str
    default: bool = Field(description="The product's default language: the note itself.")
    status: Literal["missing", "draft", "published", "outdated"]
    title: str | None = Field(description="Null when missing.")
    updated_at: datetime | None
    published_at: datetime | None


class TranslationList(BaseModel):
    note_id: int
    translations: list[TranslationState] = Field(
        description="Every language of the product, its default first."
    )


class Version(BaseModel):
    version: str
    notes: int
    published: int
    latest_published_at: datetime | None


class VersionList(BaseModel):
    versions: list[Version] = Field(description="Newest version first.")


class Subscriber(BaseModel):
    id: int
    email: str
    status: Literal["pending", "confirmed", "unsubscribed", "bounced"]
    frequency: Literal["every", "important", "digest"]
    categories: list[str]
    locale: str | None
    created_at: datetime
    confirmed_at: datetime | None


class SubscriberList(BaseModel):
    subscribers: list[Subscriber]
    next_cursor: str | None


class ImportChange(BaseModel):
    version: str
    title: str
    action: Literal["create", "update", "publish", "unchanged", "skip"]
    note_id: int | None
    reason: str


class ImportProblem(BaseModel):
    line: int | None
    text: str
    reason: str


class ImportReport(BaseModel):
    format: str
    dry_run: bool
    counts: dict[str, int]
    changes: list[ImportChange]
    problems: list[ImportProblem] = Field(description="What was not imported, and why.")


class Error(BaseModel):
    error: str
    errors: dict[str, str] | None = Field(default=None, description="A message per bad field.")


# Support impact (GET /support-impact): the figures the worker rolls up, per note and per
# release; ``announcements.support_impact`` says how each is counted.


class ImpactWindow(BaseModel):
    tickets: int = Field(description="The topic's tickets, matched to a user or not.")
    active_users: int = Field(
        description="Users first seen before the window ended and last seen after it began."
    )
    per_1000: float | None


class ImpactGroup(BaseModel):
    users: int
    tickets: int
    per_1000: float | None
    low: float | None = Field(description="95 % exact Poisson interval, per 1,000 users.")
    high: float | None


class ImpactDifference(BaseModel):
    """One group's ticket rate against the other's, with the exact 95 % interval."""

    ratio: float | None = Field(description="Null when the other group opened no tickets.")
    ratio_low: float
    ratio_high: float | None = Field(description="Null when unbounded.")
    percent_fewer: float | None = Field(description="(1 - ratio) x 100; negative: more.")
    low: float | None
    high: float


class ImpactHoldback(BaseModel):
    """The hold-back experiment: the causal estimate."""

    percent: int
    treated: ImpactGroup
    control: ImpactGroup
    effect: ImpactDifference | None
    verdict: str


class ImpactHelp(BaseModel):
    """Help before a ticket (``Tidings.beforeSupport``) since the note went out."""

    shown: int = Field(description="Times the note(s) were offered to someone about to write in.")
    answered: int = Field(description="Times one answered their question: tickets deflected.")
    needs_help: int = Field(description="Times someone shown it still needed help.")


class ImpactAcknowledgement(BaseModel):
    """Who of a must-acknowledge note's exposed users pressed "I understand"."""

    exposed: int
    acknowledged: int
    not_yet: int


class ImpactFigures(BaseModel):
    note_id: int | None = Field(description="Null for a whole release.")
    note_ids: list[int] = Field(description="The published notes counted.")
    version: str
    title: str
    published_at: datetime
    window_end: datetime
    window_open: bool
    topics: list[str] = Field(description="Empty: every ticket counts.")
    exposed: int = Field(
        description="Users seen since publication and first seen before the window ended, "
        "on a version that includes the note (or with no version)."
    )
    readers: int
    non_readers: int
    tickets_readers: int
    tickets_non_readers: int
    rate_readers_per_1000: float | None
    rate_readers_ci: tuple[float, float] | None = Field(description="95 %; null: no readers.")
    rate_non_readers_per_1000: float | None
    rate_non_readers_ci: tuple[float, float] | None
    difference: ImpactDifference | None = Field(description="Readers against non-readers.")
    verdict: str
    before: ImpactWindow
    after: ImpactWindow
    unmatched_tickets: int
    holdback: ImpactHoldback | None
    help: ImpactHelp | None = Field(None, description="Null until the next roll-up counts it.")
    acknowledgement: ImpactAcknowledgement | None = Field(
        None, description="For a note that requires acknowledgement; null otherwise."
    )


class SupportImpactReport(BaseModel):
    computed_at: datetime | None = Field(description="When the figures were last counted.")
    notes: list[ImpactFigures] = Field(description="Newest release first.")
    releases: list[ImpactFigures] = Field(description="Newest version first.")


# Tickets (POST and GET /tickets): help-desk tickets from any desk or script; the same
# rule (``announcements.tickets.check_ticket``) as webhooks and CSV imports apply.

TicketTag = Annotated[str, Field(max_length=tickets.MAX_TAG_LENGTH)]


class TicketCreate(_Request):
    """A ticket; the same source and external_id again updates it, and fields left out
    keep what was stored."""

    source: str = Field(
        min_length=1,
        max_length=tickets.MAX_SOURCE_LENGTH,
        description="Where the ticket comes from: letters, digits, - . _ (stored lowercase).",
        examples=["jira"],
    )
    external_id: str = Field(
        min_length=1, max_length=tickets.MAX_EXTERNAL_ID_LENGTH, description="The desk's id."
    )
    created_at: Moment = Field(description="When it was opened, with its offset.")
    user_id: str | None = Field(
        default=None,
        max_length=tickets.MAX_USER_ID_LENGTH,
        description="The requester's id in your product, as the widget knows them.",
    )
    email: str | None = Field(
        default=None,
        max_length=subscriptions.MAX_ADDRESS_LENGTH,
        description="The requester's address: kept only as a keyed hash, to find the user. "
        "Send user_id, email or both.",
    )
    app_version: str | None = Field(default=None, max_length=tickets.MAX_APP_VERSION_LENGTH)
    tags: Annotated[list[TicketTag], Field(max_length=tickets.MAX_TAGS)] | None = Field(
        default=None,
        description="Left out or null: the stored tags stay. A list, even an empty one, "
        "replaces them.",
    )
    subject: str | None = Field(default=None, max_length=tickets.MAX_SUBJECT_LENGTH)


class TicketQuery(_Input):
    """Filters and paging for the ticket list (query arguments)."""

    model_config = ConfigDict(extra="ignore")

    source: str | None = Field(default=None, max_length=tickets.MAX_SOURCE_LENGTH)
    matched: bool | None = Field(default=None, description="true: matched to a user; false: not.")
    created_after: Moment | None = Field(default=None, description="Opened at or after.")
    created_before: Moment | None = Field(default=None, description="Opened before.")
    cursor: str | None = Field(default=None, max_length=64, description="From next_cursor.")
    limit: int = Field(default=50, ge=1, le=100)


class Ticket(BaseModel):
    """A stored ticket. Never its requester's address."""

    id: int
    source: str
    external_id: str
    created_at: datetime
    received_at: datetime
    updated_at: datetime
    requester_external_id: str | None = Field(description="The user id the desk sent.")
    end_user_external_id: str | None = Field(
        description="The end user it is matched to, by user id or address; null: unmatched."
    )
    app_version: str | None
    tags: list[str] = Field(description="Folded: lowercase, single spaces.")
    subject: str | None


class TicketStored(BaseModel):
    status: Literal["created", "updated", "unchanged"]
    ticket: Ticket


class TicketList(BaseModel):
    tickets: list[Ticket] = Field(description="The latest stored first.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


# Note insights (GET /notes/<id>/insights): the note's reach and reading, from the daily
# roll-up (``announcements.insights`` says how each figure is counted).


class InsightsQuery(_Input):
    """Which figures of a note (query arguments)."""

    model_config = ConfigDict(extra="ignore")

    by: str | None = Field(
        default=None,
        max_length=80,
        description="Break exposed users and readers down by this end-user attribute "
        "(locale, app_version, or one the host sends, such as plan): the 20 values with "
        "the most exposed users, the rest as Other, and with them every value fewer than "
        f"{insights.MIN_SEGMENT_USERS} users were exposed under, so that no value tells "
        "whether one user read the note.",
        examples=["plan"],
    )
    start: date | None = Field(
        default=None, description="The first day of the daily series (UTC); publication by default."
    )
    end: date | None = Field(
        default=None,
        description=f"Count up to the end of this day (UTC); today by default. At most "
        f"{insights.MAX_RANGE_DAYS} days after start.",
    )


class InsightsDay(BaseModel):
    """Exposed users and readers up to the end of a day, since publication."""

    date: date
    exposed: int
    readers: int


class TimeToRead(BaseModel):
    """The time from publication to each read: the nearest-rank percentiles."""

    readers: int = Field(
        description="Reads counted, up to the end of the range and the roll-up's last run "
        "(counted_until), as readers are; 0 before its first."
    )
    median_seconds: float | None = Field(
        description="Half the readers read within this; null: none."
    )
    p90_seconds: float | None = Field(description="Nine in ten read within this; null: none.")


class InsightsSegment(BaseModel):
    """A value of the attribute asked for. A user is counted under the value they had
    when counted, once as exposed and again as a reader: where values change (an upgrade
    from 2.10.0 to 2.10.1), a value's readers can outnumber its exposed users."""

    value: str = Field(
        description="The attribute's value; “(none)” for users without it; “Other”: the "
        f"values past the top 20 and those fewer than {insights.MIN_SEGMENT_USERS} users "
        "were exposed under."
    )
    exposed: int
    readers: int
    read_rate: float | None = Field(
        description="readers / exposed, at most 1; null: nobody exposed under this value."
    )


class NoteInsights(BaseModel):
    note_id: int
    exposed: int = Field(
        description="Users the widget saw since the note's publication day on a version that "
        "includes it (or with no version)."
    )
    readers: int = Field(description="Read receipts, every channel.")
    read_rate: float | None = Field(
        description="readers / exposed, at most 1; null: nobody exposed."
    )
    read_rate_ci: tuple[float, float] | None = Field(description="The 95 % Wilson interval.")
    reads_by_channel: dict[str, int] = Field(description="Largest first.")
    daily: list[InsightsDay] = Field(
        description=f"Cumulative since publication, one entry a day: at most the last "
        f"{insights.MAX_RANGE_DAYS} days of the range."
    )
    time_to_read: TimeToRead
    reactions: dict[str, int] = Field(description="Users who chose each reaction, now.")
    segments: list[InsightsSegment] | None = Field(description="Only with ?by=; null otherwise.")
    counted_until: datetime | None = Field(
        description="The roll-up holds what happened up to then; null: not counted yet."
    )
