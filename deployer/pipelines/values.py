"""Values as the rule's columns hold them: numbers, nulls, integrity levels, inner wildcards."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from sigma.exceptions import SigmaTransformationError
from sigma.processing.transformations.base import (
    DetectionItemTransformation,
)
from sigma.rule import SigmaDetectionItem, SigmaRule
from sigma.types import (
    SigmaCasedString,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from deployer.kql import kusto_type
from deployer.pipelines.detections import TableTransformation, detection_items

_NUMERIC = frozenset({"int", "long", "real"})
# RE2's metacharacters; re.escape would also escape spaces and more, which RE2 may refuse.
_REGEX_SPECIAL = re.compile(r"[\\.^$|?*+()\[\]{}]")
_HEX_OR_DECIMAL = re.compile(r"^(?:0[xX][0-9a-fA-F]+|-?\d+)$")


# --- values typed by their column ----------------------------------------------------------


@dataclass
class ValuesTypedByColumn(TableTransformation):
    """Numbers for numeric columns, and no `isnull()` on strings (Kusto strings are never null).

    The backend quotes every value, so `LogonId in~ ("0x3e7")` compares a long with strings and
    never matches; a Sigma `null` becomes `isnull(Column)`, never true on a string column.
    Upstream: the kusto backend's pipelines do not type values by their tables' schemas.
    """

    def apply(self, rule: Any) -> None:
        self.processing_item_applied(rule)
        columns = self.columns()
        if not isinstance(rule, SigmaRule) or columns is None:
            return
        for name, detection in rule.detection.detections.items():
            for item in detection_items(detection):
                if item.field is not None and item.field in columns:
                    typed = partial(
                        self._typed,
                        kind=kusto_type(columns[item.field]),
                        column=item.field,
                        name=name,
                    )
                    item.value = [_each(value, typed) for value in item.value]

    def _typed(self, value: Any, kind: str, column: str, name: str) -> Any:
        if kind == "string" and isinstance(value, SigmaNull):
            # `isempty()` is what `isnull()` means for a string: the backend writes `=~ ""`.
            return SigmaString("")
        if kind == "string" and type(value) is SigmaNumber:
            # `Column == 4` on a string column is a type error (KS106); the text is meant.
            return SigmaString(str(value))
        if kind not in _NUMERIC or not isinstance(value, SigmaString):
            return value
        plain = value.to_plain() if not value.contains_special() else None
        if plain is not None and _HEX_OR_DECIMAL.match(plain):
            return SigmaNumber(int(plain, 0))
        if plain is not None and plain.lower() == "null":
            # NOTE: the text "null" is how Sysmon and SigmaHQ write an absent number.
            return SigmaNull()
        raise SigmaTransformationError(
            f"detection '{name}' compares the {kind} column {column} with the text "
            f"'{value}', which can never match; use a number"
        )


# SecurityEvent's MandatoryLabel holds the integrity level's SID (Microsoft Learn, "4688(S): A new
# process has been created", field Mandatory Label: https://learn.microsoft.com/en-us/
# previous-versions/windows/it-pro/windows-10/security/threat-protection/auditing/event-4688;
# the column: https://learn.microsoft.com/en-us/azure/azure-monitor/reference/tables/securityevent).
# Sysmon, and so SigmaHQ, names the level instead; SigmaHQ rules often list both.
INTEGRITY_LEVEL_SIDS: Mapping[str, str] = {
    "untrusted": "S-1-16-0",
    "low": "S-1-16-4096",
    "medium": "S-1-16-8192",
    "medium plus": "S-1-16-8448",
    "high": "S-1-16-12288",
    "system": "S-1-16-16384",
    "protected": "S-1-16-20480",
}


@dataclass
class IntegrityLevelAsSid(DetectionItemTransformation):
    """Integrity level names as the SIDs SecurityEvent's MandatoryLabel holds; SIDs stay."""

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> None:
        values = [_each(v, _level_sid) for v in detection_item.value]
        # SigmaHQ rules list a level and its SID side by side: keep each SID once.
        seen: set[str] = set()
        detection_item.value = []
        for value in values:
            key = str(value) if isinstance(value, SigmaString) else None
            if key is None or key not in seen:
                detection_item.value.append(value)
            if key is not None:
                seen.add(key)


def _level_sid(value: Any) -> Any:
    if isinstance(value, SigmaString) and not value.contains_special():
        sid = INTEGRITY_LEVEL_SIDS.get(value.to_plain().casefold())
        return SigmaString(sid) if sid else value
    return value


# --- wildcards inside a value --------------------------------------------------------------


@dataclass
class InnerWildcardsAsRegex(DetectionItemTransformation):
    """A wildcard inside a value becomes an anchored regex, case-insensitive unless `|cased`.

    The backend splits `a?b*c` into `contains "a" and contains "b" ...`, which loses the order and
    the single-character wildcard (the rule matches more), and a literal `*` after a backslash
    loses the backslash. Leading and trailing `*` stay with contains/startswith/endswith.
    Upstream: KustoBackend.convert_condition_as_in_expression; AttackIQ/pySigma-backend-kusto#34
    (wildcards, closed as fixed in 1.0.1 for lone values, whose regex still lacks `(?i)` and
    anchors; lists are still split).
    """

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> None:
        detection_item.value = [_each(v, _regex_if_inner_wildcard) for v in detection_item.value]


def _each(value: Any, change: Callable[[Any], Any]) -> Any:
    """`change` applied to a value, or to each variant a modifier such as windash expanded."""
    if isinstance(value, SigmaExpansion):
        return SigmaExpansion([change(variant) for variant in value.values])
    return change(value)


def _regex_if_inner_wildcard(value: Any) -> Any:
    if not isinstance(value, SigmaString) or not value.contains_special():
        return value
    parts = list(value.s)
    while parts and parts[0] is SpecialChars.WILDCARD_MULTI:
        parts.pop(0)
    while parts and parts[-1] is SpecialChars.WILDCARD_MULTI:
        parts.pop()
    if not any(isinstance(p, SpecialChars) for p in parts):
        return value
    regex = "".join(
        ".*"
        if p is SpecialChars.WILDCARD_MULTI
        else "."
        if p is SpecialChars.WILDCARD_SINGLE
        else _REGEX_SPECIAL.sub(r"\\\g<0>", str(p))
        for p in value.s
    )
    flags = "" if isinstance(value, SigmaCasedString) else "(?i)"
    return SigmaRegularExpression(f"{flags}^{regex}$")
