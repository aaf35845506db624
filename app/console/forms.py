"""Console forms. They carry the CSRF token and the raw input; the rules live in the domain."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.fields.core import Field
from wtforms.validators import InputRequired, Length, StopValidation
from wtforms.widgets import CheckboxInput, ListWidget

from announcements import note_rules
from announcements.models import (
    ApiScope,
    Category,
    NoteStatus,
    Role,
    SupportDesk,
    WebhookEvent,
    WebhookFormat,
)
from announcements.ticket_import import FIELDS as TICKET_FIELDS

CATEGORY_CHOICES = [
    SelectChoice(c.value, c.label if c.label == c.value else f"{c.label} ({c.value})")
    for c in Category
]
ROLE_CHOICES = [
    SelectChoice(Role.VIEWER.value, "Viewer — reads everything, changes nothing"),
    SelectChoice(Role.EDITOR.value, "Editor — writes and publishes notes"),
    SelectChoice(Role.OWNER.value, "Owner — also manages the team, settings and keys"),
]


WEEKDAY_CHOICES = [
    SelectChoice(number, day)
    for number, day in enumerate(
        ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    )
]


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired("Enter your email address.")])
    password = PasswordField("Password", validators=[InputRequired("Enter your password.")])
    next = HiddenField()


def _sent(form: FlaskForm, field: Field) -> None:
    """The field was in the posted form, empty or not. A browser sends every text field and
    select of a form; one left out comes from a stale page or a script, and must not be
    read as "clear it" (or, on a settings page, as "keep it")."""
    if not field.raw_data:
        raise StopValidation("This field was not sent. Reload the page and try again.")


class ProductForm(FlaskForm):
    name = StringField("Name", validators=[_sent])
    slug = StringField(
        "Public address", validators=[_sent], description="Used in /changelog/<address>."
    )
    allowed_origins = TextAreaField(
        "Allowed origins",
        validators=[_sent],
        description="Sites that may load the widget, one per line, e.g. https://app.example.com.",
    )
    require_identity = BooleanField("Require identity verification", default=True)
    default_locale = StringField("Default language", validators=[_sent], default="en")
    logo_url = StringField(
        "Logo URL", validators=[_sent], description="https:// only. Shown on the public page."
    )
    accent_color = StringField("Accent colour", validators=[_sent], default="#4f46e5")
    noindex = BooleanField("Hide the public changelog from search engines")
    grace_releases = IntegerField(
        "Releases a new user finds unread",
        validators=[_sent],
        default=1,
        description="When the widget first sees someone, only the newest releases count as "
        "new to them; older notes are there to browse, already read. 0 shows nothing as new.",
    )
    support_window_days = IntegerField(
        "Attribution window (days)",
        validators=[_sent],
        default=14,
        description="A ticket counts against a note when it is opened within this many days "
        "after the note went out. Changing it changes every note's figures at the next "
        "recount, and the hold-back of notes whose window is open.",
    )
    email_from_name = StringField(
        "Sender name",
        validators=[_sent],
        description="Shown as who the emails are from. Default: the product's name.",
    )
    email_reply_to = StringField(
        "Reply-To address",
        validators=[_sent],
        description="Where replies to the emails go. Optional.",
    )
    digest_weekday = SelectField(
        "Weekly digest day", choices=WEEKDAY_CHOICES, coerce=int, validators=[_sent], default=0
    )
    digest_hour = SelectField(
        "Weekly digest hour (UTC)",
        choices=[SelectChoice(hour, f"{hour:02d}:00") for hour in range(24)],
        coerce=int,
        validators=[_sent],
        default=9,
    )


class NoteForm(FlaskForm):
    """A note in the editor; the browser is told the note rules' limits, and the domain
    checks every rule when the note is saved."""

    version = StringField(
        "Version",
        description="e.g. 2.4.0 or 2.4.0-beta.1",
        render_kw={"maxlength": note_rules.MAX_VERSION_LENGTH},
    )
    title = StringField("Title", render_kw={"maxlength": note_rules.MAX_TITLE_LENGTH})
    category = SelectField("Category", choices=CATEGORY_CHOICES, default=Category.ADDED.value)
    body_md = TextAreaField(
        "Body (Markdown)", description=f"Up to {note_rules.MAX_BODY_BYTES // 1024} KB."
    )
    is_important = BooleanField("Important: open as a popup in the widget")
    is_internal = BooleanField("Internal: only visible in this console")
    email_subscribers = BooleanField("Email it to subscribers when it goes live")
    audience = SelectField(
        "Show to",
        choices=[
            SelectChoice("all", "users matching every condition"),
            SelectChoice("any", "users matching any condition"),
        ],
        default="all",
    )
    publish_at = StringField("Publish at", render_kw={"type": "datetime-local"})
    expires_at = StringField(
        "Hide from the widget after",
        render_kw={"type": "datetime-local"},
        description="Optional. The public changelog and feeds keep it.",
    )
    support_topics = StringField(
        "Support topics",
        description="Help-desk tags this note answers, separated by commas, e.g. export, "
        "billing. A ticket counts towards the note when it has one of these tags or its "
        "subject holds one; with none, every ticket counts.",
        render_kw={"spellcheck": "false", "placeholder": "export, billing"},
    )
    # Text, not an IntegerField, so that a bad value gets the note rules' own words.
    holdback_percent = StringField(
        "Hold back (%)",
        default="0",
        render_kw={
            "type": "number",
            "min": 0,
            "max": note_rules.MAX_HOLDBACK_PERCENT,
            "step": 1,
            "inputmode": "numeric",
        },
    )
    requires_acknowledgement = BooleanField(
        "Requires acknowledgement: users confirm it with “I understand”",
        description="For breaking changes, security notices and terms: the widget shows it "
        "as a dialog until the user acknowledges it; closing it does not count.",
    )
    # Text, as the hold-back, for the rule's own words; blank: never.
    escalate_after_days = StringField(
        "E-mail it after (days) without acknowledgement",
        render_kw={
            "type": "number",
            "min": 1,
            "max": note_rules.MAX_ESCALATE_AFTER_DAYS,
            "step": 1,
            "inputmode": "numeric",
            "placeholder": "never",
        },
    )
    intent = HiddenField(default="save")


class MemberForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired("Enter their email address.")])
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.EDITOR.value)


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


STATUS_FILTERS = [("", "All statuses")] + [(s.value, s.value.capitalize()) for s in NoteStatus]
CATEGORY_FILTERS = [("", "All categories")] + [(c.value, c.label) for c in Category]


class _Checkboxes(SelectMultipleField):
    """Several choices as a list of checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form: object) -> None:
        """The domain says which values are valid, and how to say so."""


SCOPE_CHOICES = [
    SelectChoice(ApiScope.NOTES_READ.value, "notes:read — list and read notes and versions"),
    SelectChoice(
        ApiScope.NOTES_WRITE.value, "notes:write — write, publish, archive and delete notes"
    ),
    SelectChoice(ApiScope.IMPORT.value, "import — import a CHANGELOG.md"),
    SelectChoice(ApiScope.SUBSCRIBERS_READ.value, "subscribers:read — list email subscribers"),
]


class ApiKeyForm(FlaskForm):
    name = StringField("Name", description="What uses it, such as “GitHub Actions”.")
    scopes = _Checkboxes("Scopes", choices=SCOPE_CHOICES, default=["notes:read"])


class WebhookForm(FlaskForm):
    url = StringField(
        "URL", description="Called with a POST for each event; redirects are not followed."
    )
    events = _Checkboxes(
        "Call it when a note is",
        choices=[
            SelectChoice(WebhookEvent.PUBLISHED.value, "published"),
            SelectChoice(WebhookEvent.UPDATED.value, "updated after publishing"),
            SelectChoice(WebhookEvent.ARCHIVED.value, "archived"),
        ],
        default=[WebhookEvent.PUBLISHED.value],
    )
    format = SelectField(
        "Payload",
        choices=[
            SelectChoice(WebhookFormat.JSON.value, "JSON: the note and its links"),
            SelectChoice(WebhookFormat.SLACK.value, "Slack: an incoming-webhook message"),
        ],
    )


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[InputRequired("Enter your email address.")])


class NewPasswordForm(FlaskForm):
    """Choosing a password: after a reset link, or when accepting an invitation."""

    name = StringField("Your name")
    password = PasswordField("New password", validators=[InputRequired("Choose a password.")])


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[InputRequired("Enter your current password.")]
    )
    new_password = PasswordField(
        "New password", validators=[InputRequired("Choose a new password.")]
    )


class ConnectForm(FlaskForm):
    # Any value is passed on: support_desks.connect refuses a desk it does not know, and
    # says which it knows.
    desk = SelectField(
        "Help desk",
        choices=[SelectChoice(desk.value, desk.label) for desk in SupportDesk],
        validate_choice=False,
    )


class SecretForm(FlaskForm):
    secret = StringField("Signing secret")


# What each of Tidings' fields is, for the mapping's labels.
FIELD_LABELS = {
    "external_id": "Ticket id",
    "created_at": "Created at",
    "user_id": "Requester's user id",
    "email": "Requester's email",
    "app_version": "App version",
    "tags": "Tags",
    "subject": "Subject",
}


class TicketImportForm(FlaskForm):
    """The upload. The mapping's fields are ``map_<field>``, one per Tidings field."""

    file = FileField("CSV file")
    source = StringField(
        "Source",
        validators=[Length(max=40)],
        description="Read from a Zendesk or Freshdesk export; name any other desk, such as "
        "helpscout. A ticket is stored once per source and desk ticket id.",
    )
    date_format = StringField(
        "Date format",
        validators=[Length(max=60)],
        description="Only when times are not written as 2026-03-01 09:30:00 or ISO 8601: "
        "strptime codes, such as %d-%m-%Y %H:%M.",
    )
    dry_run = BooleanField("Dry run: only report what would be stored")

    def mapping(self) -> dict[str, str]:
        return {name: (self[f"map_{name}"].data or "").strip() for name in TICKET_FIELDS}


for _name in TICKET_FIELDS:
    setattr(
        TicketImportForm,
        f"map_{_name}",
        StringField(FIELD_LABELS[_name], validators=[Length(max=200)]),
    )


class InsightsRangeForm(FlaskForm):
    """The Insights pages' range picker, sent with GET so that a range can be linked to and
    bookmarked: it changes nothing, so it carries no CSRF token. Dates are text, as the
    browser's date input sends them, so a bad one gets the page's own words; which
    segments exist is the domain's to say."""

    class Meta:
        csrf = False

    start = StringField("From", render_kw={"type": "date"})
    end = StringField("To", render_kw={"type": "date"})
    by = SelectField("Break down by", validate_choice=False)


class NonReadersForm(FlaskForm):
    """The export of who has not read a note: which attributes go in it, and whether user
    ids are replaced by pseudonyms. Any attribute name is passed on, for the domain to
    accept or refuse."""

    attribute = _Checkboxes("Columns")
    pseudonymise = BooleanField(
        "Pseudonymise user ids",
        description="Each id becomes a code: the same code for the same user in every export "
        "of this product, even after its address changes, and no way back to the id from "
        "the file. Rows come in the codes' order, and when each user was last seen is "
        "given as the day only.",
    )
