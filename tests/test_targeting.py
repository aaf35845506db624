"""Audience rules: who a note concerns. Pure functions, no database."""

from __future__ import annotations

import pytest

from announcements import targeting
from announcements.errors import ValidationFailed


def rule(*conditions: tuple, match: str = "all") -> dict:
    built = []
    for attribute, op, *value in conditions:
        entry = {"attribute": attribute, "op": op}
        if value:
            entry["value"] = value[0]
        built.append(entry)
    return targeting.validate({"match": match, "conditions": built})


def test_no_rule_concerns_everyone() -> None:
    assert targeting.matches(None, {})
    assert targeting.matches(targeting.validate({}), {"plan": "free"})


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        (("plan", "eq", "pro"), {"plan": "pro"}, True),
        (("plan", "eq", "pro"), {"plan": "Pro "}, True),
        (("plan", "eq", "pro"), {"plan": "free"}, False),
        (("plan", "eq", "pro"), {}, False),
        (("plan", "ne", "free"), {"plan": "pro"}, True),
        (("plan", "ne", "free"), {}, True),
        (("plan", "ne", "free"), {"plan": "free"}, False),
        (("plan", "in", ["pro", "team"]), {"plan": "team"}, True),
        (("plan", "in", "pro, team"), {"plan": "free"}, False),
        (("plan", "not_in", ["pro", "team"]), {"plan": "free"}, True),
        (("plan", "not_in", ["pro", "team"]), {}, True),
        (("seats", "eq", "10"), {"seats": "10.0"}, True),
        (("score", "lt", "-1.5"), {"score": "-2"}, True),
        (("seats", "gte", "10"), {"seats": "9"}, False),
        (("seats", "gte", "10"), {"seats": "10"}, True),
        (("seats", "gt", "10"), {"seats": "100"}, True),  # as numbers, not as text
        (("seats", "lt", "10"), {"seats": "many"}, False),  # no order: no match
        (("seats", "lt", "10"), {}, False),
        (("app", "lt", "2.10.0"), {"app": "2.9.1"}, True),  # as versions, not as text
        (("app", "lte", "3.0.0"), {"app": "3.0.0-beta.1"}, True),
        (("app", "gte", "2.10"), {"app": "2.9"}, False),
        # SemVer pre-releases PEP 440 cannot read: before their release, in SemVer's order.
        (("app", "lt", "1.0.0"), {"app": "1.0.0-x.7.z.92"}, True),
        (("app", "gt", "1.0.0-alpha.1"), {"app": "1.0.0-alpha.beta"}, True),
        (("app", "gte", "1.0.0-rc.1"), {"app": "1.0.0-alpha.beta"}, False),
        (("beta", "exists"), {"beta": "yes"}, True),
        (("beta", "exists"), {"beta": ""}, False),
        (("beta", "exists"), {}, False),
    ],
)
def test_each_operator(condition: tuple, attributes: dict, expected: bool) -> None:
    assert targeting.matches(rule(condition), attributes) is expected


def test_all_needs_every_condition_and_any_needs_one() -> None:
    conditions = (("plan", "eq", "pro"), ("seats", "gte", "10"))
    assert targeting.matches(rule(*conditions), {"plan": "pro", "seats": "12"})
    assert not targeting.matches(rule(*conditions), {"plan": "pro", "seats": "2"})
    assert targeting.matches(rule(*conditions, match="any"), {"plan": "pro", "seats": "2"})
    assert not targeting.matches(rule(*conditions, match="any"), {"plan": "free"})


def test_validate_cleans_values() -> None:
    cleaned = targeting.validate(
        {
            "match": "any",
            "conditions": [
                {"attribute": " plan ", "op": "in", "value": " pro , team ,, "},
                {"attribute": "beta", "op": "exists", "value": "ignored"},
                {"attribute": "seats", "op": "gt", "value": 10},
            ],
        }
    )
    assert cleaned == {
        "match": "any",
        "conditions": [
            {"attribute": "plan", "op": "in", "value": ["pro", "team"]},
            {"attribute": "beta", "op": "exists"},
            {"attribute": "seats", "op": "gt", "value": "10"},
        ],
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("plan=pro", "object"),
        ({"match": "some", "conditions": []}, "“all” or “any”"),
        ({"conditions": "plan"}, "must be a list"),
        ({"conditions": [{"attribute": "", "op": "eq", "value": "x"}]}, "name an attribute"),
        ({"conditions": [{"attribute": "a b", "op": "eq", "value": "x"}]}, "name an attribute"),
        ({"conditions": [{"attribute": "plan", "op": "like", "value": "x"}]}, "choose one of"),
        ({"conditions": [{"attribute": "plan", "op": "eq", "value": " "}]}, "give a value"),
        ({"conditions": [{"attribute": "plan", "op": "eq", "value": True}]}, "text or a number"),
        ({"conditions": [{"attribute": "plan", "op": "in", "value": ""}]}, "at least one"),
        ({"conditions": [{"attribute": "seats", "op": "gt", "value": "lots"}]}, "no order"),
        ({"conditions": [{"attribute": "p", "op": "eq", "value": "x" * 201}]}, "under 200"),
        ({"conditions": [{"attribute": "p", "op": "exists"}] * 21}, "at most 20"),
        ({"conditions": ["plan"]}, "expected attribute"),
    ],
)
def test_validate_rejects_with_a_message(raw: object, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        targeting.validate(raw)
    assert list(caught.value.errors) == ["audience"]
    assert message in caught.value.errors["audience"]


def test_describe_reads_like_a_sentence() -> None:
    described = targeting.describe(rule(("plan", "in", ["pro", "team"]), ("seats", "gte", "10")))
    assert described == "plan is one of pro, team and seats is at least 10"
    assert targeting.describe(None) == "Everyone"
