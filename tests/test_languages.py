"""Language tags and the fallback chain, table by table: how a tag is written once
normalised, which languages a reader of a tag is offered and in what order, which of a
product's languages a browser's list lands on, and which way each is written."""

from __future__ import annotations

import langcodes
import pytest

from announcements import languages


@pytest.mark.parametrize(
    ("raw", "tag"),
    [
        ("en", "en"),
        ("FR", "fr"),
        ("  fr  ", "fr"),
        ("en_GB", "en-GB"),
        ("en-us", "en-US"),
        ("pt_br", "pt-BR"),
        ("zh_Hant_HK", "zh-Hant-HK"),
        ("zh_hant_hk", "zh-Hant-HK"),
        ("zh-hans", "zh-Hans"),
        ("sr-latn-rs", "sr-Latn-RS"),
        ("es-419", "es-419"),
        ("de-DE-1996", "de-DE-1996"),
        ("yue", "yue"),
        # Deprecated codes become the ones in use.
        ("iw", "he"),
        ("in", "id"),
        ("mo", "ro"),
    ],
)
def test_a_tag_is_normalised(raw, tag) -> None:
    assert languages.normalise(raw) == tag
    assert languages.is_valid(raw)
    assert languages.normalise(tag) == tag  # written once, the same again


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "xx",  # no such language
        "zz-ZZ",
        "tlh",  # Klingon: a valid code, but no locale data to format dates with
        "fr-",
        "fr--CA",
        "123",
        "x-private",
        "i-klingon",
        "éé",
        "en\x00",
        "fr CA",
        "a" * 40,
        # Valid tags that name no particular language: undetermined, uncoded, several,
        # no linguistic content.
        "und",
        "UND",
        "und-Latn",
        "mis",
        "mul",
        "zxx",
    ],
)
def test_an_invalid_tag_is_refused_with_a_message_a_person_can_act_on(raw) -> None:
    assert not languages.is_valid(raw)
    with pytest.raises(languages.BadTag, match="is not a language tag; use one such as en"):
        languages.normalise(raw)


@pytest.mark.parametrize(
    ("requested", "have", "default", "chain"),
    [
        # The standard chain: the tag, shorter tags the product has, then the default.
        ("fr-CA", ["fr"], "en", ("fr", "en")),
        ("fr-CA", ["fr", "fr-CA"], "en", ("fr-CA", "fr", "en")),
        ("fr_CA", ["fr-CA"], "en", ("fr-CA", "en")),
        ("FR-ca", ["fr"], "en", ("fr", "en")),
        ("fr", ["fr"], "en", ("fr", "en")),
        ("pt-BR", ["pt", "es"], "en", ("pt", "en")),
        ("zh-Hant-HK", ["zh", "zh-Hant"], "en", ("zh-Hant", "zh", "en")),
        ("zh_Hant_HK", ["zh-Hant-HK"], "en", ("zh-Hant-HK", "en")),
        ("ar-EG", ["fr", "ar"], "en", ("ar", "en")),
        ("iw", ["he"], "en", ("he", "en")),
        # A less specific tag never reaches a more specific language.
        ("fr", ["fr-CA"], "en", ("en",)),
        ("zh", ["zh-Hant"], "en", ("en",)),
        # A language the product lacks, or nothing, or nonsense: the default alone.
        ("de", ["fr", "ar"], "en", ("en",)),
        ("en-GB", ["fr"], "en", ("en",)),
        ("en", ["fr"], "en", ("en",)),
        (None, ["fr"], "en", ("en",)),
        ("", ["fr"], "en", ("en",)),
        ("xx-!!", ["fr"], "en", ("en",)),
        ("*", ["fr"], "en", ("en",)),
        # The default may be any language, and may be listed among the others or not.
        ("en-US", ["fr", "en"], "fr", ("en", "fr")),
        ("fr-BE", ["fr", "en"], "fr", ("fr",)),
        ("fr-CA", ["en", "fr"], "en", ("fr", "en")),
    ],
)
def test_the_fallback_chain(requested, have, default, chain) -> None:
    assert languages.chain(requested, have, default) == chain


@pytest.mark.parametrize(
    ("requested", "available", "default", "chosen"),
    [
        (["fr-CA", "en"], ["en", "fr"], "en", "fr"),
        (["de", "fr"], ["en", "fr"], "en", "fr"),
        (["de"], ["en", "fr"], "en", "en"),
        (["en-US", "fr"], ["en", "fr"], "en", "en"),  # en-US is answered by the default
        (["fr"], ["en", "fr-CA"], "en", "en"),
        (["zh-Hant-TW"], ["en", "zh-Hant", "zh-Hans"], "en", "zh-Hant"),
        (["*"], ["en", "fr"], "en", "en"),
        (["nonsense!", "ar"], ["en", "ar"], "en", "ar"),
        ([], ["en", "fr"], "en", "en"),
    ],
)
def test_negotiate_takes_the_first_requested_language_that_is_available(
    requested, available, default, chosen
) -> None:
    assert languages.negotiate(requested, available, default) == chosen


@pytest.mark.parametrize(
    ("requested", "interface"),
    [
        (["fr-CH", "de"], "fr"),
        (["ar-EG"], "ar"),
        (["ja-JP"], "ja"),
        (["es-419"], "es"),
        (["pt-BR", "de-AT"], "de"),
        (["pt-BR"], "en"),
        ([], "en"),
    ],
)
def test_the_interface_speaks_the_nearest_complete_catalogue(requested, interface) -> None:
    assert languages.interface_locale(requested) == interface


@pytest.mark.parametrize(
    ("tag", "direction"),
    [
        ("ar", "rtl"),
        ("ar-EG", "rtl"),
        ("he", "rtl"),
        ("fa", "rtl"),
        ("ur", "rtl"),
        ("en", "ltr"),
        ("fr-CA", "ltr"),
        ("ja", "ltr"),
        ("zh-Hant-HK", "ltr"),
    ],
)
def test_direction(tag, direction) -> None:
    assert languages.direction(tag) == direction


def test_pick_takes_the_first_language_of_the_order_with_a_text() -> None:
    texts = {"fr": "Bonjour", "ar": "مرحبا"}
    assert languages.pick(texts, ("fr-CA", "fr", "en")) == ("fr", "Bonjour")
    assert languages.pick(texts, ("de", "en")) is None
    assert languages.pick({}, ("fr",)) is None


def test_truncations_and_names() -> None:
    assert languages.truncations("zh-Hant-HK") == ["zh-Hant-HK", "zh-Hant", "zh"]
    assert languages.display_name("fr", "fr") == "français"  # as a sentence writes it
    assert languages.display_name("fr-CA", "en") == "French (Canada)"


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("fr", "Français"),  # a list of languages starts each with a capital
        ("es-ES", "Español (España)"),  # only the first letter changes
        ("en-GB", "English (United Kingdom)"),
        ("de", "Deutsch"),
        ("ar", "العربية"),  # no case
        ("ka", "ქართული"),  # Georgian starts no word with its capitals
    ],
)
def test_a_language_is_listed_by_its_own_name(tag, name) -> None:
    assert languages.own_name(tag) == name


def test_tags_a_client_makes_up_never_fill_memory() -> None:
    """Accept-Language and ?locale= are the client's to fill: ten thousand made-up tags
    leave langcodes' caches, and ours, no bigger than their limits."""
    for number in range(10_000):
        languages.is_valid(f"en-{number:08x}")
        languages.is_valid(f"zz{number}")
    assert len(langcodes.Language._PARSE_CACHE) <= languages.LANGCODES_CACHE_LIMIT + 1
    assert len(langcodes.Language._INSTANCES) <= languages.LANGCODES_CACHE_LIMIT + 1
    assert languages.normalise("en_gb") == "en-GB"


@pytest.mark.parametrize("raw", ["x-abc", "en--GB", "é", "en-" + "a" * 9, "٣٣", "en gb"])
def test_what_has_no_tags_shape_is_refused_before_any_lookup(raw: str) -> None:
    with pytest.raises(languages.BadTag):
        languages.normalise(raw)
