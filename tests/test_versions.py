"""Versions are ordered as versions, never as strings."""

from __future__ import annotations

import pytest

from announcements import versions


def test_orders_numerically_and_puts_prereleases_before_their_release() -> None:
    given = ["2.9.1", "2.10.0", "2.10.0-rc.1", "1.0.0", "2.10.0-beta.2", "2.9.0", "10.0"]
    assert versions.newest_first(given) == [
        "10.0",
        "2.10.0",
        "2.10.0-rc.1",
        "2.10.0-beta.2",
        "2.9.1",
        "2.9.0",
        "1.0.0",
    ]


@pytest.mark.parametrize(
    "raw", ["1.2.3", "v2.0.0", "2024.11", "1.0.0-alpha", "1.0.0b2", "1.0.0.post1", "3.1.4+build.7"]
)
def test_pep440_and_semver_spellings_are_accepted(raw: str) -> None:
    assert versions.is_valid(raw)


@pytest.mark.parametrize("raw", ["", "   ", "latest", "1.2.3-x.7.z.92", "banana-1", "1" * 80])
def test_invalid_versions_say_what_is_expected(raw: str) -> None:
    with pytest.raises(versions.InvalidVersion) as caught:
        versions.parse(raw)
    assert "2.4.0" in caught.value.errors["version"]


def test_normalise_keeps_the_teams_spelling() -> None:
    assert versions.normalise(" v2.0.0 ") == "v2.0.0"
