"""The management API's requests and answers as pydantic models.

The same models validate each request and make the OpenAPI document
(``app.api.openapi``), so the document cannot drift from what the API accepts.
Requests are strict: a number where text belongs is an error, never coerced, and an
unknown field is refused rather than ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from announcements import note_rules, targeting, versions
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
    status: StatusName
    published_at: datetime | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    url: str | None = Field(description="Its public page, once it is published.")


class NoteList(BaseModel):
    notes: list[Note]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


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
