"""Console forms. They carry the CSRF token and the raw input; the rules live in the domain."""

from __future__ import annotations

from flask_babel import lazy_gettext
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
from wtforms.validators import DataRequired, InputRequired, Length, StopValidation
from wtforms.widgets import CheckboxInput, ListWidget

from announcements import note_rules
from announcements.languages import CONSOLE_LOCALES, MAX_TAG_LENGTH, own_name
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

# The Keep a Changelog kind stays in English beside the name users see: it is the
# CHANGELOG.md heading an import reads.
CATEGORY_CHOICES = [
    SelectChoice(
        c.value,
        lazy_gettext(c.label)
        if c.label == c.value
        else lazy_gettext("%(label)s (%(kind)s)", label=lazy_gettext(c.label), kind=c.value),
    )
    for c in Category
]
ROLE_CHOICES = [
    SelectChoice(Role.VIEWER.value, lazy_gettext("Viewer — reads everything, changes nothing")),
    SelectChoice(Role.EDITOR.value, lazy_gettext("Editor — writes and publishes notes")),
    SelectChoice(
        Role.OWNER.value, lazy_gettext("Owner — also manages the team, settings and keys")
    ),
]


WEEKDAY_CHOICES = [
    SelectChoice(number, day)
    for number, day in enumerate(
        [
            lazy_gettext("Monday"),
            lazy_gettext("Tuesday"),
            lazy_gettext("Wednesday"),
            lazy_gettext("Thursday"),
            lazy_gettext("Friday"),
            lazy_gettext("Saturday"),
            lazy_gettext("Sunday"),
        ]
    )
]


class LoginForm(FlaskForm):
    email = EmailField(
        lazy_gettext("Email"),
        validators=[InputRequired(lazy_gettext("Enter your email address."))],
    )
    password = PasswordField(
        lazy_gettext("Password"), validators=[InputRequired(lazy_gettext("Enter your password."))]
    )
    next = HiddenField()


def _sent(form: FlaskForm, field: Field) -> None:
    """The field was in the posted form, empty or not. A browser sends every text field and
    select of a form; one left out comes from a stale page or a script, and must not be
    read as "clear it" (or, on a settings page, as "keep it")."""
    if not field.raw_data:
        raise StopValidation(
            lazy_gettext("This field was not sent. Reload the page and try again.")
        )


class ProductForm(FlaskForm):
    name = StringField(lazy_gettext("Name"), validators=[_sent])
    slug = StringField(
        lazy_gettext("Public address"),
        validators=[_sent],
        # No "<" or "&" in a lazy string: Jinja takes it as markup (LazyString.__html__).
        description=lazy_gettext(
            "Lowercase letters, digits and hyphens: the changelog is at /changelog/this-address."
        ),
    )
    allowed_origins = TextAreaField(
        lazy_gettext("Allowed origins"),
        validators=[_sent],
        description=lazy_gettext(
            "Sites that may load the widget, one per line, e.g. https://app.example.com."
        ),
    )
    require_identity = BooleanField(lazy_gettext("Require identity verification"), default=True)
    default_locale = StringField(
        lazy_gettext("Default language"),
        validators=[_sent],
        default="en",
        description=lazy_gettext("A language tag such as en, fr-CA or pt-BR."),
    )
    logo_url = StringField(
        lazy_gettext("Logo URL"),
        validators=[_sent],
        description=lazy_gettext("https:// only. Shown on the public page."),
    )
    accent_color = StringField(lazy_gettext("Accent colour"), validators=[_sent], default="#4f46e5")
    noindex = BooleanField(lazy_gettext("Hide the public changelog from search engines"))
    grace_releases = IntegerField(
        lazy_gettext("Releases a new user finds unread"),
        validators=[_sent],
        default=1,
        description=lazy_gettext(
            "When the widget first sees someone, only the newest releases count as new to "
            "them; older notes are there to browse, already read. 0 shows nothing as new."
        ),
    )
    support_window_days = IntegerField(
        lazy_gettext("Attribution window (days)"),
        validators=[_sent],
        default=14,
        description=lazy_gettext(
            "A ticket counts against a note when it is opened within this many days after "
            "the note went out. Changing it changes every note's figures at the next "
            "recount, and the hold-back of notes whose window is open."
        ),
    )
    email_from_name = StringField(
        lazy_gettext("Sender name"),
        validators=[_sent],
        description=lazy_gettext("Shown as who the emails are from. Default: the product's name."),
    )
    email_reply_to = StringField(
        lazy_gettext("Reply-To address"),
        validators=[_sent],
        description=lazy_gettext("Where replies to the emails go. Optional."),
    )
    digest_weekday = SelectField(
        lazy_gettext("Weekly digest day"),
        choices=WEEKDAY_CHOICES,
        coerce=int,
        validators=[_sent],
        default=0,
    )
    digest_hour = SelectField(
        lazy_gettext("Weekly digest hour (UTC)"),
        choices=[SelectChoice(hour, f"{hour:02d}:00") for hour in range(24)],
        coerce=int,
        validators=[_sent],
        default=9,
    )


class SettingsForm(ProductForm):
    """A product's settings. Its default language is shown, and changed with its other
    languages (:class:`DefaultLanguageForm`), where the rules for changing it are told."""

    default_locale = StringField(
        lazy_gettext("Default language"),
        render_kw={"readonly": True},
        description=lazy_gettext("The notes' own language. Change it under Languages, below."),
    )


class LanguageForm(FlaskForm):
    """A language to add to a product; the domain says whether the tag is one. The field
    is named as the domain names what is wrong with a product's languages."""

    languages = StringField(
        lazy_gettext("Add a language"),
        validators=[_sent, DataRequired(lazy_gettext("Enter a language tag, such as fr-CA."))],
        description=lazy_gettext(
            "A BCP 47 tag: a language (fr, ja), with a region or script where readers need "
            "it (fr-CA, pt-BR, zh-Hant)."
        ),
        render_kw={
            "maxlength": MAX_TAG_LENGTH,
            "spellcheck": "false",
            "autocapitalize": "off",
            "autocomplete": "off",
            "placeholder": "fr-CA",
        },
    )


class DefaultLanguageForm(FlaskForm):
    """The language a product's notes are written in."""

    default_locale = StringField(
        lazy_gettext("Notes are written in"),
        validators=[_sent],
        description=lazy_gettext(
            "Change it only to correct it: the notes' text stays as it is. Refused for a "
            "language notes have translations in."
        ),
        render_kw={
            "maxlength": MAX_TAG_LENGTH,
            "spellcheck": "false",
            "autocapitalize": "off",
            "autocomplete": "off",
        },
    )


class NoteForm(FlaskForm):
    """A note in the editor; the browser is told the note rules' limits, and the domain
    checks every rule when the note is saved."""

    version = StringField(
        lazy_gettext("Version"),
        description=lazy_gettext("e.g. 2.4.0 or 2.4.0-beta.1"),
        render_kw={"maxlength": note_rules.MAX_VERSION_LENGTH},
    )
    title = StringField(lazy_gettext("Title"), render_kw={"maxlength": note_rules.MAX_TITLE_LENGTH})
    category = SelectField(
        lazy_gettext("Category"), choices=CATEGORY_CHOICES, default=Category.ADDED.value
    )
    body_md = TextAreaField(
        lazy_gettext("Body (Markdown)"),
        description=lazy_gettext("Up to %(size)s KB.", size=note_rules.MAX_BODY_BYTES // 1024),
    )
    is_important = BooleanField(lazy_gettext("Important: open as a popup in the widget"))
    is_internal = BooleanField(lazy_gettext("Internal: only visible in this console"))
    email_subscribers = BooleanField(lazy_gettext("Email it to subscribers when it goes live"))
    audience = SelectField(
        lazy_gettext("Show to"),
        choices=[
            SelectChoice("all", lazy_gettext("users matching every condition")),
            SelectChoice("any", lazy_gettext("users matching any condition")),
        ],
        default="all",
    )
    publish_at = StringField(lazy_gettext("Publish at"), render_kw={"type": "datetime-local"})
    expires_at = StringField(
        lazy_gettext("Hide from the widget after"),
        render_kw={"type": "datetime-local"},
        description=lazy_gettext("Optional. The public changelog and feeds keep it."),
    )
    support_topics = StringField(
        lazy_gettext("Support topics"),
        description=lazy_gettext(
            "Help-desk tags this note answers, separated by commas, e.g. export, billing. A "
            "ticket counts towards the note when it has one of these tags or its subject "
            "holds one; with none, every ticket counts."
        ),
        render_kw={"spellcheck": "false", "placeholder": "export, billing"},
    )
    # Text, not an IntegerField, so that a bad value gets the note rules' own words.
    holdback_percent = StringField(
        lazy_gettext("Hold back (%)"),
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
        lazy_gettext("Requires acknowledgement: users confirm it with “I understand”"),
        description=lazy_gettext(
            "For breaking changes, security notices and terms: the widget shows it as a "
            "dialog until the user acknowledges it; closing it does not count."
        ),
    )
    # Text, as the hold-back, for the rule's own words; blank: never.
    escalate_after_days = StringField(
        lazy_gettext("E-mail it after (days) without acknowledgement"),
        render_kw={
            "type": "number",
            "min": 1,
            "max": note_rules.MAX_ESCALATE_AFTER_DAYS,
            "step": 1,
            "inputmode": "numeric",
            "placeholder": lazy_gettext("never"),
        },
    )
    intent = HiddenField(default="save")


class TranslationForm(FlaskForm):
    """A note's title and body in one of its product's other languages. Made with the
    language as its prefix, so that each tab of the editor has fields of its own."""

    title = StringField(lazy_gettext("Title"), render_kw={"maxlength": note_rules.MAX_TITLE_LENGTH})
    body_md = TextAreaField(
        lazy_gettext("Body (Markdown)"),
        description=lazy_gettext("Up to %(size)s KB.", size=note_rules.MAX_BODY_BYTES // 1024),
    )
    announce = BooleanField(
        lazy_gettext("Announce it to readers of this language who have not read the note"),
        description=lazy_gettext(
            "E-mails it to the confirmed subscribers who read this language and have not "
            "read the note. Without it nobody is told: readers of this language simply see "
            "this text from now on."
        ),
    )
    intent = HiddenField(default="draft")


class ConsoleLanguageForm(FlaskForm):
    """The language the console speaks to its member; blank follows the browser."""

    locale = SelectField(
        lazy_gettext("Console language"),
        choices=[SelectChoice("", lazy_gettext("As my browser asks"))]
        + [SelectChoice(tag, own_name(tag)) for tag in CONSOLE_LOCALES],
        validators=[_sent],
    )


class MemberForm(FlaskForm):
    email = EmailField(
        lazy_gettext("Email"),
        validators=[InputRequired(lazy_gettext("Enter their email address."))],
    )
    role = SelectField(lazy_gettext("Role"), choices=ROLE_CHOICES, default=Role.EDITOR.value)


class RoleForm(FlaskForm):
    role = SelectField(lazy_gettext("Role"), choices=ROLE_CHOICES)


STATUS_FILTERS = [
    ("", lazy_gettext("All statuses")),
    (NoteStatus.DRAFT.value, lazy_gettext("Draft")),
    (NoteStatus.SCHEDULED.value, lazy_gettext("Scheduled")),
    (NoteStatus.PUBLISHED.value, lazy_gettext("Published")),
    (NoteStatus.ARCHIVED.value, lazy_gettext("Archived")),
]
CATEGORY_FILTERS = [("", lazy_gettext("All categories"))] + [
    (c.value, lazy_gettext(c.label)) for c in Category
]


class _Checkboxes(SelectMultipleField):
    """Several choices as a list of checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()

    def pre_validate(self, form: object) -> None:
        """The domain says which values are valid, and how to say so."""


SCOPE_CHOICES = [
    SelectChoice(
        ApiScope.NOTES_READ.value, lazy_gettext("notes:read — list and read notes and versions")
    ),
    SelectChoice(
        ApiScope.NOTES_WRITE.value,
        lazy_gettext("notes:write — write, publish, archive and delete notes"),
    ),
    SelectChoice(ApiScope.IMPORT.value, lazy_gettext("import — import a CHANGELOG.md")),
    SelectChoice(
        ApiScope.SUBSCRIBERS_READ.value, lazy_gettext("subscribers:read — list email subscribers")
    ),
    SelectChoice(
        ApiScope.PRIVACY.value, lazy_gettext("privacy — export and erase an end user's data")
    ),
]


class ApiKeyForm(FlaskForm):
    name = StringField(
        lazy_gettext("Name"), description=lazy_gettext("What uses it, such as “GitHub Actions”.")
    )
    scopes = _Checkboxes(lazy_gettext("Scopes"), choices=SCOPE_CHOICES, default=["notes:read"])


class WebhookForm(FlaskForm):
    url = StringField(
        lazy_gettext("URL"),
        description=lazy_gettext("Called with a POST for each event; redirects are not followed."),
    )
    events = _Checkboxes(
        lazy_gettext("Call it when a note is"),
        choices=[
            SelectChoice(WebhookEvent.PUBLISHED.value, lazy_gettext("published")),
            SelectChoice(WebhookEvent.UPDATED.value, lazy_gettext("updated after publishing")),
            SelectChoice(WebhookEvent.ARCHIVED.value, lazy_gettext("archived")),
        ],
        default=[WebhookEvent.PUBLISHED.value],
    )
    format = SelectField(
        lazy_gettext("Payload"),
        choices=[
            SelectChoice(WebhookFormat.JSON.value, lazy_gettext("JSON: the note and its links")),
            SelectChoice(
                WebhookFormat.SLACK.value, lazy_gettext("Slack: an incoming-webhook message")
            ),
        ],
    )


class ForgotPasswordForm(FlaskForm):
    email = EmailField(
        lazy_gettext("Email"),
        validators=[InputRequired(lazy_gettext("Enter your email address."))],
    )


class NewPasswordForm(FlaskForm):
    """Choosing a password: after a reset link, or when accepting an invitation."""

    name = StringField(lazy_gettext("Your name"))
    password = PasswordField(
        lazy_gettext("New password"),
        validators=[InputRequired(lazy_gettext("Choose a password."))],
    )


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        lazy_gettext("Current password"),
        validators=[InputRequired(lazy_gettext("Enter your current password."))],
    )
    new_password = PasswordField(
        lazy_gettext("New password"),
        validators=[InputRequired(lazy_gettext("Choose a new password."))],
    )


class ConnectForm(FlaskForm):
    # Any value is passed on: support_desks.connect refuses a desk it does not know, and
    # says which it knows.
    desk = SelectField(
        lazy_gettext("Help desk"),
        choices=[SelectChoice(desk.value, desk.label) for desk in SupportDesk],
        validate_choice=False,
    )


class SecretForm(FlaskForm):
    secret = StringField(lazy_gettext("Signing secret"))


# What each of Tidings' fields is, for the mapping's labels.
FIELD_LABELS = {
    "external_id": lazy_gettext("Ticket id"),
    "created_at": lazy_gettext("Created at"),
    "user_id": lazy_gettext("Requester's user id"),
    "email": lazy_gettext("Requester's email"),
    "app_version": lazy_gettext("App version"),
    "tags": lazy_gettext("Tags"),
    "subject": lazy_gettext("Subject"),
}


class TicketImportForm(FlaskForm):
    """The upload. The mapping's fields are ``map_<field>``, one per Tidings field."""

    file = FileField(lazy_gettext("CSV file"))
    source = StringField(
        lazy_gettext("Source"),
        validators=[Length(max=40)],
        description=lazy_gettext(
            "Read from a Zendesk or Freshdesk export; name any other desk, such as helpscout. "
            "A ticket is stored once per source and desk ticket id."
        ),
    )
    date_format = StringField(
        lazy_gettext("Date format"),
        validators=[Length(max=60)],
        description=lazy_gettext(
            "Only when times are not written as 2026-03-01 09:30:00 or ISO 8601: strptime "
            "codes, such as %d-%m-%Y %H:%M."
        ),
    )
    dry_run = BooleanField(lazy_gettext("Dry run: only report what would be stored"))

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

    start = StringField(lazy_gettext("From"), render_kw={"type": "date"})
    end = StringField(lazy_gettext("To"), render_kw={"type": "date"})
    by = SelectField(lazy_gettext("Break down by"), validate_choice=False)


class NonReadersForm(FlaskForm):
    """The export of who has not read a note: which attributes go in it, and whether user
    ids are replaced by pseudonyms. Any attribute name is passed on, for the domain to
    accept or refuse."""

    attribute = _Checkboxes(lazy_gettext("Columns"))
    pseudonymise = BooleanField(
        lazy_gettext("Pseudonymise user ids"),
        description=lazy_gettext(
            "Each id becomes a code: the same code for the same user in every export of "
            "this product, even after its address changes, and no way back to the id from "
            "the file. Rows come in the codes' order, and when each user was last seen is "
            "given as the day only."
        ),
    )
