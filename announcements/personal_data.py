"""Which attribute names look like personal data.

A host sends its users' attributes so that notes can be aimed at some of them (a plan,
a role, a locale). Tidings keeps what it is sent until the user is erased or not seen for
the product's retention period, so an attribute that holds an address, a name or a phone
number puts that into Tidings for no purpose a note needs. The console flags such names
on the settings page, and the roll-up never counts by one (a segment's values become the
rows of aggregate tables, where an e-mail as a segment would put every address).

Only the name is looked at, never the value: it is a warning to whoever wires the widget,
not a filter. A name is read as words: ``emailAddress``, ``e-mail``, ``Email.Address`` and
``email_address`` are the same words.
"""

from __future__ import annotations

import re

# Words that alone make a name personal wherever they stand in it.
PERSONAL_WORDS = frozenset(
    {
        # e-mail ("e-mail" is the words "e" and "mail")
        "email",
        "mail",
        # names of a person, written as one word
        "firstname",
        "lastname",
        "fullname",
        "surname",
        "username",
        "displayname",
        "givenname",
        "familyname",
        "nickname",
        # phone
        "phone",
        "mobile",
        "tel",
        "telephone",
        "cell",
        # where someone lives (and an IP address, which the law counts too)
        "address",
        "street",
        "postcode",
        "postal",
        "zip",
        "zipcode",
        "ip",
        # birth
        "birthday",
        "birthdate",
        "birth",
        "dob",
        # identity documents
        "ssn",
        "passport",
    }
)
# "name" is a person's only after one of these ("first_name") or alone ("name"); after
# anything else it is the name of that thing: "team_name", "company_name", "plan_name"
# name an organisation or an offer that many users share, which is what a segment is for.
PERSON_NAME_QUALIFIERS = frozenset(
    {"first", "last", "full", "display", "user", "given", "family", "middle", "nick", "real"}
)
# A name that starts with "is"/"has" or ends with one of these is a fact about the field,
# not the field: "email_verified", "has_phone", "email_domain" hold no address or number.
FACT_PREFIXES = frozenset({"is", "has"})
FACT_SUFFIXES = frozenset(
    {"verified", "confirmed", "consent", "enabled", "count", "domain", "type", "status"}
)
# Word boundaries inside camelCase: "firstName" and "HTMLEmail".
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def words(name: str) -> list[str]:
    """The lowercase words of an attribute name: camelCase split, and any run of ``_``,
    ``-``, ``.``, spaces or other punctuation a boundary."""
    return [word for word in _SEPARATORS.split(_CAMEL.sub("_", name).lower()) if word]


def looks_personal(name: str) -> bool:
    """Whether an attribute called ``name`` probably holds personal data: an e-mail, a
    person's name, a phone number, a postal or IP address, a birth date or an identity
    document number. ``plan``, ``role``, ``company_size`` and ``team_name`` do not."""
    found = words(name)
    if not found or found[0] in FACT_PREFIXES or found[-1] in FACT_SUFFIXES:
        return False
    if found[-2:] in (["opt", "in"], ["opt", "out"]):  # email_opt_in: a choice, not an address
        return False
    if any(word in PERSONAL_WORDS for word in found):
        return True
    return any(
        word == "name" and (at == 0 or found[at - 1] in PERSON_NAME_QUALIFIERS)
        for at, word in enumerate(found)
    )
