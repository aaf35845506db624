"""Audience rules: does this note concern a user with these attributes?

A rule is ``{"match": "all" | "any", "conditions": [{"attribute", "op", "value"}]}``.
Attributes come from the host product as strings. Ordering operators compare
dotted values that read as versions as versions (``2.10`` after ``2.9``), other
numbers as numbers, and do not match anything else; equality compares the same
way and falls back to text, ignoring case. A note without a rule concerns everyone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from packaging.version import Version

from announcements import versions
from announcements.errors import ValidationFailed
from announcements.languages import N_

MAX_CONDITIONS = 20
MAX_VALUES = 50
MAX_VALUE_LENGTH = 200
ATTRIBUTE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")

OPERATORS = {
    "eq": N_("is"),
    "ne": N_("is not"),
    "in": N_("is one of"),
    "not_in": N_("is none of"),
    "lt": N_("is less than"),
    "lte": N_("is at most"),
    "gt": N_("is greater than"),
    "gte": N_("is at least"),
    "exists": N_("is set"),
}
LIST_OPERATORS = {"in", "not_in"}
ORDER_OPERATORS = {"lt", "lte", "gt", "gte"}

Rule = dict[str, Any]


# Attribute values repeat across users and requests: parse each once.
@lru_cache(maxsize=16384)
def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@lru_cache(maxsize=16384)
def _version(text: str) -> Version | None:
    return versions.parse(text) if versions.is_valid(text) else None


def _comparable(left: str, right: str) -> tuple[Any, Any] | None:
    """Both sides as versions or as numbers; None when they are neither."""
    left_version, right_version = _version(left), _version(right)
    dotted = "." in left or "." in right
    if left_version is not None and right_version is not None and dotted:
        return left_version, right_version
    left_number, right_number = _number(left), _number(right)
    if left_number is not None and right_number is not None:
        return left_number, right_number
    if left_version is not None and right_version is not None:
        return left_version, right_version
    return None


def _equal(left: str, right: str) -> bool:
    pair = _comparable(left, right)
    if pair is not None:
        return bool(pair[0] == pair[1])
    return left.strip().casefold() == right.strip().casefold()


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}


def _condition_holds(condition: Mapping[str, Any], attributes: Mapping[str, str]) -> bool:
    op: str = condition["op"]
    value: Any = condition.get("value")
    actual = attributes.get(condition["attribute"])
    if op == "exists":
        return actual is not None and actual != ""
    if actual is None:
        # Someone with no plan is not on the free plan: negations hold, the rest do not.
        return op in ("ne", "not_in")
    if op == "eq":
        return _equal(actual, value)
    if op == "ne":
        return not _equal(actual, value)
    if op == "in":
        return any(_equal(actual, item) for item in value)
    if op == "not_in":
        return not any(_equal(actual, item) for item in value)
    pair = _comparable(actual, value)
    return pair is not None and _ORDER[op](*pair)


def matches(rule: Rule | None, attributes: Mapping[str, str]) -> bool:
    """True when a user with ``attributes`` is in the audience of ``rule``."""
    if not rule or not rule.get("conditions"):
        return True
    results = (_condition_holds(c, attributes) for c in rule["conditions"])
    return any(results) if rule.get("match") == "any" else all(results)


def _clean_value(op: str, value: Any, position: int) -> tuple[Any, str | None]:
    where = f"Condition {position}"
    if op == "exists":
        return None, None
    if op in LIST_OPERATORS:
        items = value if isinstance(value, list) else str(value or "").split(",")
        items = [str(item).strip() for item in items if str(item).strip()]
        if not items:
            return None, f"{where}: list at least one value, separated by commas."
        if len(items) > MAX_VALUES:
            return None, f"{where}: at most {MAX_VALUES} values."
        if any(len(item) > MAX_VALUE_LENGTH for item in items):
            return None, f"{where}: keep each value under {MAX_VALUE_LENGTH} characters."
        return items, None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None, f"{where}: the value must be text or a number."
    text = str(value).strip()
    if not text:
        return None, f"{where}: give a value to compare with."
    if len(text) > MAX_VALUE_LENGTH:
        return None, f"{where}: keep the value under {MAX_VALUE_LENGTH} characters."
    if op in ORDER_OPERATORS and _number(text) is None and _version(text) is None:
        return None, f"{where}: “{text}” is neither a number nor a version, so it has no order."
    return text, None


def validate(raw: Any) -> Rule | None:
    """Check an audience rule and return it cleaned; None means everyone.

    Raises ValidationFailed with every problem under the ``audience`` field.
    """
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict):
        raise ValidationFailed({"audience": "An audience is an object with match and conditions."})
    match = raw.get("match", "all")
    conditions = raw.get("conditions") or []
    problems: list[str] = []
    if match not in ("all", "any"):
        problems.append("Match must be “all” or “any”.")
    if not isinstance(conditions, list):
        raise ValidationFailed({"audience": "Conditions must be a list."})
    if len(conditions) > MAX_CONDITIONS:
        problems.append(f"Use at most {MAX_CONDITIONS} conditions.")
    cleaned = []
    for position, condition in enumerate(conditions[:MAX_CONDITIONS], start=1):
        if not isinstance(condition, dict):
            problems.append(f"Condition {position}: expected attribute, op and value.")
            continue
        attribute = str(condition.get("attribute") or "").strip()
        op = condition.get("op")
        if not ATTRIBUTE_PATTERN.fullmatch(attribute):
            problems.append(
                f"Condition {position}: name an attribute with letters, digits, _ . or - "
                "(up to 64), such as plan or company.size."
            )
            continue
        if op not in OPERATORS:
            problems.append(f"Condition {position}: choose one of {', '.join(OPERATORS)}.")
            continue
        value, problem = _clean_value(op, condition.get("value"), position)
        if problem:
            problems.append(problem)
            continue
        entry: dict[str, Any] = {"attribute": attribute, "op": op}
        if op != "exists":
            entry["value"] = value
        cleaned.append(entry)
    if problems:
        raise ValidationFailed({"audience": " ".join(problems)})
    if not cleaned:
        return None
    return {"match": match, "conditions": cleaned}


def attributes_used(rule: Rule | None) -> set[str]:
    """The attribute names a rule looks at."""
    return {c["attribute"] for c in rule["conditions"]} if rule else set()


def describe(rule: Rule | None) -> str:
    """The rule in words, for the console: “plan is one of pro, team and seats ≥ 10”."""
    if not rule or not rule.get("conditions"):
        return "Everyone"
    joiner = " or " if rule.get("match") == "any" else " and "
    parts = []
    for condition in rule["conditions"]:
        value = condition.get("value")
        shown = ", ".join(value) if isinstance(value, list) else value
        words = f"{condition['attribute']} {OPERATORS[condition['op']]}"
        parts.append(words if condition["op"] == "exists" else f"{words} {shown}")
    return joiner.join(parts)
