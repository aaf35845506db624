"""Versions are ordered as versions, never as strings."""

from __future__ import annotations

import itertools
import pickle

import pytest
from packaging.version import Version

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


# Every valid example on https://semver.org (SemVer 2.0.0, items 9 to 11), and the
# pre-release issue 13 names.
SEMVER_EXAMPLES = [
    "1.2.3-x.7.z.92",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-0.3.7",
    "1.0.0-x.7.z.92",
    "1.0.0-x-y-z.--",
    "1.0.0-alpha+001",
    "1.0.0+20130313144700",
    "1.0.0-beta+exp.sha.5114f85",
    "1.0.0+21AF26D3----117B344092BD",
    "v1.0.0-alpha.beta",
]


@pytest.mark.parametrize("raw", SEMVER_EXAMPLES)
def test_every_semver_example_is_accepted_and_ordered_with_its_release(raw: str) -> None:
    parsed = versions.parse(raw)
    assert parsed.release == ((1, 2, 3) if raw.startswith("1.2.3") else (1, 0, 0))
    assert versions.normalise(raw) == raw
    build_only = "-" not in raw.split("+")[0]
    release = versions.parse(raw.split("-")[0].split("+")[0])
    if build_only:
        assert parsed >= release
        assert not parsed.is_prerelease
    else:
        assert parsed < release
        assert parsed.is_prerelease


def test_semver_precedence_from_the_specification() -> None:
    """semver.org, item 11: the example chain, each strictly before the next."""
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
    parsed = [versions.parse(raw) for raw in chain]
    for lower, higher in itertools.combinations(parsed, 2):
        assert lower < higher, (str(lower), str(higher))
        assert higher > lower
        assert lower != higher
    assert versions.newest_first(reversed(chain)) == list(reversed(chain))
    assert versions.newest_first(chain) == list(reversed(chain))


def test_semver_identifiers_numbers_before_words_and_longer_after_prefix() -> None:
    ordered = [
        "1.0.0-0.3.7",
        "1.0.0-1",
        "1.0.0-1.0",
        "1.0.0-2",
        "1.0.0-10",
        "1.0.0-X",
        "1.0.0-x",
        "1.0.0-x.7",
        "1.0.0-x.7.z.92",
        "1.0.0-x.7.z.92.0",
        "1.0.0-x.y",
        "1.0.0-x-y-z.--",
        "1.0.0",
        "1.0.1-0",
        "1.0.1",
    ]
    assert versions.newest_first(ordered) == list(reversed(ordered))


def test_build_metadata_does_not_change_semver_precedence() -> None:
    """semver.org, item 10: a build is the same release, for a SemVer-only build."""
    assert versions.parse("1.0.0+21AF26D3----117B344092BD") == versions.parse("1.0.0")
    assert versions.parse("1.0.0-x.7+b.1") == versions.parse("1.0.0-x.7+b.2")
    assert hash(versions.parse("1.0.0-x.7+b.1")) == hash(versions.parse("1.0.0-x.7"))
    # Still its own text, so an import keeps the builds apart.
    assert str(versions.parse("v1.0.0-x.7+b.1")) == "1.0.0-x.7+b.1"
    # Spellings that order alike keep one order from run to run, by their text.
    assert versions.newest_first(["1.0.0+x--1", "1.0.0", "1.0.0+x--2"]) == [
        "1.0.0+x--2",
        "1.0.0+x--1",
        "1.0.0",
    ]


def test_a_semver_prerelease_is_never_read_as_a_post_release() -> None:
    """PEP 440 reads 1.0.0-1 as 1.0.0.post1; SemVer, and the brief, put it before 1.0.0."""
    assert versions.parse("1.0.0-1") < versions.parse("1.0.0")
    assert versions.parse("1.0.0-1") < versions.parse("1.0.0-alpha")
    assert versions.parse("1.0.0-0") < versions.parse("1.0.0-1")
    # PEP 440's own spelling of a post-release is still one.
    assert versions.parse("1.0.0.post1") > versions.parse("1.0.0")
    assert versions.parse("1.0.0post1") > versions.parse("1.0.0")


def test_pep440_and_semver_share_one_scale() -> None:
    assert versions.parse("1.0.0rc1") == versions.parse("1.0.0-rc.1")
    assert versions.parse("1.0.0b2") == versions.parse("1.0.0-beta.2")
    assert (
        versions.parse("1.0.0a1") < versions.parse("1.0.0-alpha.beta") < versions.parse("1.0.0b0")
    )
    assert versions.parse("1.0.0.dev3") < versions.parse("1.0.0-0.3.7")
    assert (
        versions.parse("1.0.0-x.7.z.92") < versions.parse("1.0.0") < versions.parse("1.0.0.post1")
    )
    assert versions.parse("1!0.1") > versions.parse("99.0.0-x")
    # A PEP 440 number inside a pre-release keeps its value: rc10 after rc9.
    assert versions.parse("2.0.0-rc10") > versions.parse("2.0.0-rc9")
    assert versions.parse("2.0.0-beta.10") > versions.parse("2.0.0-beta.9")


# Versions PEP 440 reads, including its own odd corners: epochs, post and dev
# releases, implicit numbers, local labels with words and numbers.
PEP440_CORPUS = [
    "1.0.dev0",
    "1.0.dev1",
    "1.0a0.dev1",
    "1.0a1",
    "1.0a1.post1",
    "1.0a2",
    "1.0b1.dev2",
    "1.0b1",
    "1.0rc1",
    "1.0c2",
    "1.0",
    "1.0.0",
    "1.0+abc",
    "1.0+abc.5",
    "1.0+5",
    "1.0+5.abc",
    "1.0.post1.dev1",
    "1.0.post1",
    "1.0-2",
    "1.0.1",
    "1.1.dev1",
    "1.1",
    "2024.11",
    "1!0.1",
    "1!1.0a1",
]


def test_pep440_versions_keep_packagings_order_and_text() -> None:
    for left, right in itertools.product(PEP440_CORPUS, repeat=2):
        ours, theirs = (
            (versions.parse(left), versions.parse(right)),
            (Version(left), Version(right)),
        )
        assert (ours[0] < ours[1]) == (theirs[0] < theirs[1]), (left, right)
        assert (ours[0] == ours[1]) == (theirs[0] == theirs[1]), (left, right)
        # And against packaging's own objects, either way round.
        assert (ours[0] < theirs[1]) == (theirs[0] < theirs[1]), (left, right)
        assert (theirs[0] < ours[1]) == (theirs[0] < theirs[1]), (left, right)
    for raw in PEP440_CORPUS:
        assert str(versions.parse(raw)) == str(Version(raw))


def test_a_parsed_version_survives_pickling() -> None:
    parsed = versions.parse("1.0.0-x.7.z.92+b.5")
    copied = pickle.loads(pickle.dumps(parsed))  # noqa: S301 - our own bytes
    assert copied == parsed
    assert str(copied) == "1.0.0-x.7.z.92+b.5"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "latest",
        "banana-1",
        "1" * 80,
        # Not SemVer either: empty or non-ASCII identifiers, a number with a
        # leading zero inside a word-bearing pre-release, two build parts.
        "1.0.0-",
        "1.0.0+",
        "1.0.0-alpha..1",
        "1.0.0-x.01",
        "1.0.0-alpha_beta",
        "1.0.0-β",
        "1.2.3-x.\u0663",
        "1.0.0+a+b",
        "1.2-x.7",
        "1.0.0-" + "x" * 60,
    ],
)
def test_invalid_versions_say_what_is_expected(raw: str) -> None:
    with pytest.raises(versions.InvalidVersion) as caught:
        versions.parse(raw)
    assert "2.4.0" in caught.value.errors["version"]
    assert not versions.is_valid(raw)


def test_normalise_keeps_the_teams_spelling() -> None:
    assert versions.normalise(" v2.0.0 ") == "v2.0.0"
    assert versions.normalise(" 1.2.3-x.7.z.92 ") == "1.2.3-x.7.z.92"
