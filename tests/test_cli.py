"""The command line: demo data and accounts."""

from __future__ import annotations

import json

import pyotp
import pytest
from sqlalchemy import func, select

from announcements import accounts, two_factor
from announcements.models import (
    AuditEvent,
    EndUser,
    Membership,
    Note,
    Reaction,
    ReadReceipt,
    Role,
    TeamMember,
    utcnow,
)
from tests.factories import make_member, make_product


@pytest.fixture
def two_products(session) -> None:
    """Two products, lumen and ledger, as the demo has: what `users create` needs of it."""
    owner = make_member(session)
    make_product(session, owner, slug="lumen")
    make_product(session, owner, slug="ledger")


def test_demo_json_has_what_scripts_need(runner, monkeypatch) -> None:
    monkeypatch.setenv("DEMO_PASSWORD", "demo-password-123")
    result = runner.invoke(args=["demo", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data["console"]) == {"url", "email", "password"}
    assert data["console"]["password"] == "demo-password-123"
    lumen = next(p for p in data["products"] if p["slug"] == "lumen")
    assert set(lumen) >= {"slug", "widget_key", "identity_secret", "notes"}
    notes = lumen["notes"]
    assert set(notes[0]) == {"id", "version", "title", "status", "internal"}
    statuses = {n["status"] for n in notes}
    assert {"draft", "scheduled", "published"} <= statuses
    assert any(n["internal"] for n in notes)
    assert len({n["version"] for n in notes}) >= 12


def test_demo_is_realistic_idempotent_and_prints_a_fresh_random_password(runner, session) -> None:
    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    notes = session.scalars(select(Note)).all()
    assert {n.category.value for n in notes} == {
        "Added",
        "Changed",
        "Deprecated",
        "Removed",
        "Fixed",
        "Security",
    }
    assert sum(n.is_important for n in notes) >= 3
    bodies = "".join(n.body_html for n in notes)
    for tag in ("<ul>", "<ol>", "<pre><code", "<img", "<table>"):
        assert tag in bodies
    published = sorted(n.published_at for n in notes if n.published_at)
    assert (published[-1] - published[0]).days > 120
    # Readers, so a note's page in the console has a read rate and comments to show.
    demo_readers = EndUser.external_id.like("demo-reader-%")
    assert session.scalar(select(func.count()).select_from(EndUser).where(demo_readers)) == 80
    internal = [n.id for n in notes if n.is_internal or n.published_at is None]
    read = set(session.scalars(select(ReadReceipt.note_id)))
    assert read and not read & set(internal)
    assert session.scalar(select(func.count()).select_from(Reaction).where(Reaction.comment != ""))

    tables = (Note, Membership, AuditEvent, EndUser, ReadReceipt, Reaction)
    counts = [session.scalar(select(func.count()).select_from(t)) for t in tables]
    second = runner.invoke(args=["demo"])
    assert second.exit_code == 0
    assert [session.scalar(select(func.count()).select_from(t)) for t in tables] == counts
    password = second.output.split("Password:")[1].strip()
    assert password and password not in first.output
    assert accounts.authenticate(session, "demo@example.com", password) is not None


@pytest.mark.usefixtures("two_products")
def test_users_create_reads_the_password_from_stdin(runner, session) -> None:
    result = runner.invoke(
        args=[
            *("users", "create", "Ops@Example.com", "--role", "owner"),
            *("--all-products", "--password-stdin"),
        ],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    member = accounts.authenticate(session, "ops@example.com", "a long enough password")
    assert member is not None
    assert {m.role for m in member.memberships} == {Role.OWNER}
    assert len(member.memberships) == 2


def test_users_create_refuses_short_passwords_and_duplicates(runner, session) -> None:
    create = ["users", "create", "a@example.com", "--all-products", "--password-stdin"]
    short = runner.invoke(args=create, input="short\n")
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    assert session.scalar(select(func.count()).select_from(TeamMember)) == 0
    assert runner.invoke(args=create, input="long enough pw\n").exit_code == 0
    again = runner.invoke(args=create, input="long enough pw\n")
    assert again.exit_code != 0 and "already has an account" in again.output
    unknown = runner.invoke(
        args=["users", "create", "b@example.com", "--product", "nope", "--password-stdin"],
        input="long enough pw\n",
    )
    assert unknown.exit_code != 0 and "No product with the slug nope" in unknown.output
    assert session.scalar(select(func.count()).select_from(TeamMember)) == 1


@pytest.mark.parametrize(
    "choice", [[], ["--all-products", "--product", "lumen"]], ids=["neither", "both"]
)
@pytest.mark.usefixtures("two_products")
def test_users_create_must_be_told_which_products(runner, session, choice) -> None:
    """Once every product by default, so a forgotten flag made an owner of everything."""
    members = session.scalar(select(func.count()).select_from(TeamMember))
    result = runner.invoke(
        args=["users", "create", "ops@example.com", *choice, "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 2
    assert "--product SLUG" in result.output and "--all-products" in result.output
    assert session.scalar(select(func.count()).select_from(TeamMember)) == members


@pytest.mark.usefixtures("two_products")
def test_users_create_gives_the_role_on_the_named_products_only(runner, session) -> None:
    result = runner.invoke(
        args=[
            *("users", "create", "support@example.com", "--role", "viewer"),
            *("--product", "lumen", "--password-stdin"),
        ],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "viewer on lumen" in result.output
    member = accounts.authenticate(session, "support@example.com", "a long enough password")
    assert [(m.product.slug, m.role) for m in member.memberships] == [("lumen", Role.VIEWER)]


def test_users_reset_two_factor_turns_it_off_and_audits_it(runner, session) -> None:
    """An operator's way back in for someone who lost their phone and their codes."""
    member = make_member(session, email="lost@example.com")
    make_product(session, member, slug="lumen")
    secret = two_factor.start_enrolment(member, None)
    two_factor.confirm_enrolment(session, member, secret, pyotp.TOTP(secret).now(), now=utcnow())
    session.commit()

    result = runner.invoke(args=["users", "reset-two-factor", "lost@example.com"])
    assert result.exit_code == 0, result.output
    session.expire_all()
    assert not two_factor.is_enrolled(session.get(TeamMember, member.id))
    assert (
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "account.two_factor_removed")
        )
        == 1
    )

    missing = runner.invoke(args=["users", "reset-two-factor", "nobody@example.com"])
    assert missing.exit_code != 0 and "No account with the address" in missing.output
