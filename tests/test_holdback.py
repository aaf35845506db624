"""Hold-back groups: the same in every process, the requested share (a chi-square test over
100,000 ids), independent from one note to the next, and recorded once per exposed user,
never changed afterwards."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scipy import stats
from sqlalchemy import insert, select

from announcements import holdback, support_impact
from announcements.models import EndUser, HoldbackAssignment
from tests.factories import make_note, make_product

ROOT = Path(__file__).resolve().parents[1]
IDS = [f"user-{number}" for number in range(100_000)]
PUBLISHED = datetime(2026, 10, 1, 9, tzinfo=UTC)


def test_the_group_is_the_same_in_another_process() -> None:
    sample = IDS[:2000] + ["", "ünïcode", "a|b", "42"]
    here = "".join("1" if holdback.in_control(7, user, 20) else "0" for user in sample)
    script = (
        "import sys; from announcements import holdback; "
        "ids = sys.stdin.read().split('\\n'); "
        "print(''.join('1' if holdback.in_control(7, u, 20) else '0' for u in ids))"
    )
    there = subprocess.run(
        [sys.executable, "-c", script],
        input="\n".join(sample),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    assert there == here
    assert "1" in here and "0" in here


@pytest.mark.parametrize("percent", [10, 20, 50])
def test_the_control_group_has_the_requested_share(percent: int) -> None:
    control = sum(holdback.in_control(3, user, percent) for user in IDS)
    expected = [len(IDS) * percent / 100, len(IDS) * (100 - percent) / 100]
    result = stats.chisquare([control, len(IDS) - control], expected)
    assert result.pvalue > 0.001, (control, expected)


def test_no_share_holds_nobody_back() -> None:
    assert not any(holdback.in_control(3, user, 0) for user in IDS[:5000])
    assert all(0 <= holdback.bucket(3, user) < 10_000 for user in IDS[:5000])


def test_groups_of_two_notes_are_independent() -> None:
    table = [[0, 0], [0, 0]]
    for user in IDS:
        table[holdback.in_control(1, user, 50)][holdback.in_control(2, user, 50)] += 1
    _, pvalue, _, _ = stats.chi2_contingency(table)
    assert pvalue > 0.001, table


def _add_users(session, product, numbers, *, seen: datetime, version: str | None = "2.0.0"):
    session.execute(
        insert(EndUser),
        [
            {
                "product_id": product.id,
                "external_id": f"user-{number}",
                "app_version": version,
                "first_seen_at": seen - timedelta(days=30),
                "last_seen_at": seen,
            }
            for number in numbers
        ],
    )
    session.commit()


def _recorded(session, note) -> dict[str, tuple[bool, datetime]]:
    rows = session.execute(
        select(EndUser.external_id, HoldbackAssignment.control, HoldbackAssignment.assigned_at)
        .join(EndUser, EndUser.id == HoldbackAssignment.end_user_id)
        .where(HoldbackAssignment.note_id == note.id)
    )
    return {user: (control, at) for user, control, at in rows}


def test_the_assignment_is_recorded_once_per_exposed_user_and_never_changed(session) -> None:
    product = make_product(session)
    note = make_note(session, product, version="2.0.0", now=PUBLISHED)
    plain = make_note(session, product, version="2.0.0", now=PUBLISHED)
    note.holdback_percent = 30
    session.commit()
    first = PUBLISHED + timedelta(days=2)
    _add_users(session, product, range(0, 1000), seen=first)
    _add_users(session, product, range(1000, 1100), seen=PUBLISHED - timedelta(hours=2))  # before
    _add_users(session, product, range(1100, 1200), seen=first, version="1.9.0")  # too old
    _add_users(session, product, range(1200, 1300), seen=first, version=None)  # any version

    support_impact.refresh(session, product, now=first)
    recorded = _recorded(session, note)
    exposed = {f"user-{n}" for n in [*range(0, 1000), *range(1200, 1300)]}
    assert set(recorded) == exposed
    assert all(at == first for _, at in recorded.values())
    assert {u for u, (control, _) in recorded.items() if control} == {
        u for u in exposed if holdback.in_control(note.id, u, 30)
    }
    # Only the note with a hold-back has groups.
    assert _recorded(session, plain) == {}
    # Nothing new: nothing written, not even a new time.
    support_impact.refresh(session, product, now=first + timedelta(hours=1))
    assert _recorded(session, note) == recorded

    # Later: more users seen. Recorded groups stay as drawn; the newcomers get theirs.
    later = first + timedelta(days=3)
    _add_users(session, product, range(2000, 2200), seen=later)
    support_impact.refresh(session, product, now=later)
    again = _recorded(session, note)
    assert {u: again[u] for u in recorded} == recorded
    newcomers = {f"user-{n}" for n in range(2000, 2200)}
    assert set(again) == exposed | newcomers
    assert {u for u in newcomers if again[u][0]} == {
        u for u in newcomers if holdback.in_control(note.id, u, 30)
    }
    assert all(again[u][1] == later for u in newcomers)
    figures = support_impact.note_figures(session, note)["holdback"]
    assert figures["treated"]["users"] + figures["control"]["users"] == len(again)
    assert figures["control"]["users"] == sum(control for control, _ in again.values())
