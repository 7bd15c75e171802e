"""Our processing items on the backend's pipelines: KQL that means what the Sigma rule means.

Each item fixes one defect of pySigma-backend-kusto 1.0.1's pipelines and is named for it; the
tests (tests/test_pipelines.py) show the bare backend's output beside ours. `spliced` puts them
into a backend pipeline at the step each one belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
)
from sigma.exceptions import SigmaTransformationError
from sigma.pipelines.azuremonitor.transformations import (
    DefaultHashesValuesTransformation,
    SecurityEventHashesValuesTransformation,
)
from sigma.pipelines.kusto_common.transformations import BaseHashesValuesTransformation
from sigma.pipelines.microsoftxdr.transformations import XDRHashesValuesTransformation
from sigma.pipelines.sentinelasim.transformations import (
    FileEventHashesValuesTransformation,
    ProcessCreateHashesValuesTransformation,
    WebSessionHashesValuesTransformation,
)
from sigma.processing.conditions import IncludeFieldCondition, RuleProcessingStateCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation, Transformation
from sigma.processing.transformations.base import (
    DetectionItemTransformation,
    PreprocessingTransformation,
)
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    SigmaCasedString,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from deployer.kql import kusto_type

# Where our warnings for one rule are kept while the pipeline runs (the pipeline's state is
# reset for every rule); convert.py reads them after the conversion.
WARNINGS_STATE = "sentinel_deployer_warnings"
_NUMERIC = frozenset({"int", "long", "real"})
# RE2's metacharacters; re.escape would also escape spaces and more, which RE2 may refuse.
_REGEX_SPECIAL = re.compile(r"[\\.^$|?*+()\[\]{}]")
_HEX_OR_DECIMAL = re.compile(r"^(?:0[xX][0-9a-fA-F]+|-?\d+)$")
# Tables that hold Windows events only (Log Analytics table reference, SecurityEvent: "Security
# events collected from Windows machines").
WINDOWS_ONLY_TABLES = frozenset({"SecurityEvent"})


# --- where a detection is used: plainly or under a `not` -----------------------------------


def negated_detections(rule: SigmaRule) -> frozenset[str]:
    """Names of the detections some condition of the rule uses under an odd number of `not`."""
    detections = rule.detection.detections
    negated: set[str] = set()

    def walk(node: object, negative: bool) -> None:
        if isinstance(node, ConditionIdentifier):
            if negative:
                negated.add(str(node.identifier))
        elif isinstance(node, ConditionSelector):
            if negative:
                for ref in node.resolve_referenced_detections(rule.detection):
                    negated.add(str(ref.identifier))
        elif isinstance(node, ConditionNOT):
            walk(node.args[0], not negative)
        elif isinstance(node, ConditionAND | ConditionOR):
            for arg in node.args:
                walk(arg, negative)

    for condition in rule.detection.parsed_condition:
        walk(condition.parse(postprocess=False), False)
    return frozenset(negated & set(detections))


def alternatives_only(rule: SigmaRule, dropped: set[str]) -> bool:
    """Whether the rule's conditions use each `dropped` detection only as one `or` alternative.

    That is: outside any `not`, directly inside an `or` (or a `1 of` selector) that keeps an
    alternative not dropped. pySigma leaves an emptied detection out of its `or`; inside an
    `and` it would leave it out too, and the rule would match more.
    """
    detections = rule.detection

    def ok(node: object, negative: bool) -> bool:
        if isinstance(node, ConditionIdentifier):
            return str(node.identifier) not in dropped
        if isinstance(node, ConditionSelector):
            names = {str(r.identifier) for r in node.resolve_referenced_detections(detections)}
            if node.cond_class is ConditionOR and not negative:
                return bool(names - dropped)
            return not names & dropped
        if isinstance(node, ConditionNOT):
            return ok(node.args[0], not negative)
        if isinstance(node, ConditionOR) and not negative:
            kept = [
                arg
                for arg in node.args
                if not (isinstance(arg, ConditionIdentifier) and str(arg.identifier) in dropped)
            ]
            return bool(kept) and all(ok(arg, negative) for arg in kept)
        if isinstance(node, ConditionAND | ConditionOR):
            return all(ok(arg, negative) for arg in node.args)
        return True

    return all(ok(c.parse(postprocess=False), False) for c in detections.parsed_condition)


def _warn(transformation: Transformation, message: str) -> None:
    assert transformation._pipeline is not None  # set by pySigma before any apply()
    transformation._pipeline.state.setdefault(WARNINGS_STATE, []).append(message)


def _items(detection: SigmaDetection) -> Iterator[SigmaDetectionItem]:
    for item in detection.detection_items:
        if isinstance(item, SigmaDetection):
            yield from _items(item)
        else:
            yield item


@dataclass
class _TableTransformation(PreprocessingTransformation):
    """A transformation that needs the rule's table and that table's columns."""

    pipeline_name: str = ""
    columns_of: Callable[[str], Mapping[str, Mapping[str, str]]] | None = None

    def table(self) -> str | None:
        assert self._pipeline is not None  # set by pySigma before any apply()
        table = self._pipeline.state.get("query_table")
        return table if isinstance(table, str) else None

    def columns(self) -> Mapping[str, str] | None:
        table = self.table()
        if table is None or self.columns_of is None:
            return None
        return self.columns_of(self.pipeline_name).get(table)


# --- 1. keyword detections -------------------------------------------------------------------


@dataclass
class RefuseKeywordDetections(PreprocessingTransformation):
    """Keyword (field-less) detections: refused, since the backend emits `where "a" or "b"`.

    NOTE: `where * has "a"` would be valid KQL, but `has` matches whole terms while Sigma
    keywords match substrings, and `* contains` is not supported by Kusto; a refusal with the
    reason is the only faithful answer. Upstream: pySigma-backend-kusto emits the bare string.
    """

    def apply(self, rule: Any) -> None:
        self.processing_item_applied(rule)
        if not isinstance(rule, SigmaRule):
            return
        for name, detection in rule.detection.detections.items():
            if any(item.field is None for item in _items(detection)):
                raise SigmaTransformationError(
                    f"detection '{name}' has keywords (values without a field), which the kusto "
                    'backend turns into `where "..."`, not a KQL filter; match a field instead '
                    "(e.g. CommandLine|contains)"
                )


@dataclass
class RefuseFieldReferences(PreprocessingTransformation):
    """`|fieldref` (a field compared with another field): refused, the backend cannot write it.

    The backend raises NotImplementedError or, in the microsoft_xdr pipeline, a SigmaValueError
    about a "plain representation" that does not say which feature is missing.
    """

    def apply(self, rule: Any) -> None:
        self.processing_item_applied(rule)
        if not isinstance(rule, SigmaRule):
            return
        for name, detection in rule.detection.detections.items():
            for item in _items(detection):
                if any(isinstance(value, SigmaFieldReference) for value in item.value):
                    raise SigmaTransformationError(
                        f"detection '{name}' compares field {item.field} with another field "
                        "(|fieldref), which the kusto backend cannot convert"
                    )


# --- 2. log sources routed to tables that cannot hold them ------------------------------------


@dataclass
class RefuseNonWindowsRuleInWindowsTable(_TableTransformation):
    """A rule for Linux or macOS never matches in a Windows-only table such as SecurityEvent."""

    def apply(self, rule: Any) -> None:
        self.processing_item_applied(rule)
        table, product = self.table(), rule.logsource.product
        if table in WINDOWS_ONLY_TABLES and product and product.lower() != "windows":
            logsource = ", ".join(
                f"{key}: {value}"
                for key, value in (
                    ("category", rule.logsource.category),
                    ("product", product),
                    ("service", rule.logsource.service),
                )
                if value
            )
            raise SigmaTransformationError(
                f"log source ({logsource}) has no table in the {self.pipeline_name} pipeline: "
                f"it would read {table}, which holds Windows events only; use the "
                "sentinel_asim or microsoft_xdr pipeline"
            )


# --- 3. Hashes: `|exists`, and algorithms the table has no column for ------------------------

# The backend's own transformations per table, read for their algorithms and column names.
_HASHES: Mapping[str, Mapping[str, BaseHashesValuesTransformation]] = {
    "sentinel_asim": {
        "imProcessCreate": ProcessCreateHashesValuesTransformation(),  # type: ignore[no-untyped-call]
        "imFileEvent": FileEventHashesValuesTransformation(),  # type: ignore[no-untyped-call]
        "imWebSession": WebSessionHashesValuesTransformation(),  # type: ignore[no-untyped-call]
    },
    "azure_monitor": {
        "SecurityEvent": SecurityEventHashesValuesTransformation(),  # type: ignore[no-untyped-call]
    },
}
_HASHES_DEFAULT: Mapping[str, BaseHashesValuesTransformation] = {
    "microsoft_xdr": XDRHashesValuesTransformation(),  # type: ignore[no-untyped-call]
    "azure_monitor": DefaultHashesValuesTransformation(),  # type: ignore[no-untyped-call]
}
_BY_LENGTH = {32: "MD5", 40: "SHA1", 64: "SHA256", 128: "SHA512"}


def _hash_algorithm(value: str) -> str | None:
    """The algorithm of a Hashes value (`ALGO=hex`, `ALGO|hex` or bare hex, as the backend)."""
    plain = value.strip("*")
    for separator in ("|", "="):
        if separator in plain:
            return plain.split(separator, 1)[0].upper()
    return _BY_LENGTH.get(len(plain))


@dataclass
class HashesByAlgorithm(_TableTransformation):
    """`Hashes` values the table can hold, before the backend's hash transformation.

    The backend silently drops values of an algorithm the table lacks (even under `not`, where
    that makes the rule match more), raises a plain Exception when none is left (IMPHASH on
    DeviceProcessEvents), and crashes on `Hashes|exists`. Here `|exists` becomes "any of the
    table's hash columns is not empty", and values of another algorithm become a field named
    `Hashes (IMPHASH)`, which AlternativesWithoutColumn treats as any missing column.
    Upstream: BaseHashesValuesTransformation in pySigma-backend-kusto.
    """

    def apply(self, rule: Any) -> None:
        self.processing_item_applied(rule)
        table = self.table()
        hashes = _HASHES.get(self.pipeline_name, {}).get(table or "") or _HASHES_DEFAULT.get(
            self.pipeline_name
        )
        if not isinstance(rule, SigmaRule) or hashes is None or table is None:
            return
        for detection in rule.detection.detections.values():
            self._detection(detection, hashes)

    def _detection(self, detection: SigmaDetection, hashes: BaseHashesValuesTransformation) -> None:
        algos = [a.upper() for a in hashes.valid_hash_algos]
        for index, item in enumerate(detection.detection_items):
            if isinstance(item, SigmaDetection):
                self._detection(item, hashes)
                continue
            # The azure_monitor pipeline has already renamed Hashes to FileHash in SecurityEvent.
            if item.field not in ("Hashes", hashes.field_prefix if hashes.drop_algo_prefix else ""):
                continue
            if any(isinstance(v, SigmaExists) for v in item.value):
                columns = [
                    hashes.field_prefix + ("" if hashes.drop_algo_prefix else a) for a in algos
                ]
                detection.detection_items[index] = SigmaDetection(
                    [
                        SigmaDetectionItem(column, [], list(item.value))
                        for column in dict.fromkeys(columns)
                    ],
                    item_linking=ConditionOR,
                )
                continue
            by_algo: dict[str, list[Any]] = {}
            for value in item.value:
                algo = _hash_algorithm(str(value.to_plain())) or "unknown"
                by_algo.setdefault(algo if algo in algos else f"Hashes ({algo})", []).append(value)
            if all(key in algos for key in by_algo):
                continue
            # Values of an algorithm the table lacks go on a field no table has, so that
            # AlternativesWithoutColumn drops them where the rule then matches less, and
            # refuses the rule otherwise, as for any other missing column.
            detection.detection_items[index] = SigmaDetection(
                [
                    SigmaDetectionItem(
                        "Hashes" if key in algos else key, [], values, item.value_linking
                    )
                    for key, values in by_algo.items()
                ],
                item_linking=item.value_linking,
            )


# --- 4. alternatives on columns the table lacks -----------------------------------------------


@dataclass
class AlternativesWithoutColumn(_TableTransformation):
    """Fields the table has no column for: an `or` alternative is dropped, anything else refused.

    An alternative may go only where the rule then matches less: inside a detection that every
    condition uses plainly (not under `not`), and only when another alternative is left. The
    backend refuses the whole rule for one alternative (SigmaHQ's `Image|endswith` or
    `OriginalFileName` pairs), with a message that grows with each rule it refuses (its
    InvalidFieldTransformation appends to its own message).
    """

    def apply(self, rule: Any) -> None:
        self.processing_item_applied(rule)
        columns = self.columns()
        if not isinstance(rule, SigmaRule) or columns is None:
            return
        negated = negated_detections(rule)
        unusable: dict[str, set[str]] = {}
        for name, detection in rule.detection.detections.items():
            missing = self._prune(detection, columns, name, name not in negated)
            if missing:
                unusable[name] = missing
        if not unusable:
            return
        # A whole detection may still go where it is one alternative of the condition's `or`.
        if not negated & set(unusable) and alternatives_only(rule, set(unusable)):
            for name, missing in unusable.items():
                rule.detection.detections[name].detection_items = []
                fields = self._sigma_names(", ".join(sorted(missing)))
                _warn(
                    self,
                    f"detection '{name}' dropped ({self.table()} has no column for {fields}); the "
                    "rule matches only on the condition's other alternatives",
                )
            return
        name, missing = next(iter(unusable.items()))
        fields = ", ".join(sorted(missing))
        every = "every match of" if name not in negated else "the `not` around"
        raise SigmaTransformationError(
            f"{self.table()} has no column for {self._sigma_names(fields)}, and "
            f"{every} detection '{name}' depends on it; use the fields the table has "
            f"({self.pipeline_name} schema)"
        )

    def _sigma_names(self, fields: str) -> str:
        # Name the rule's own field beside the column it was mapped to, when it was renamed.
        assert self._pipeline is not None
        reverse = {
            target: source
            for source, targets in self._pipeline.field_mappings.items()
            for target in targets
        }
        named = []
        for column in fields.split(", "):
            source = reverse.get(column)
            named.append(f"{source} (mapped to {column})" if source else column)
        return ", ".join(named)

    def _prune(
        self, detection: SigmaDetection, columns: Mapping[str, str], name: str, positive: bool
    ) -> set[str]:
        """The fields that every match of `detection` needs and the table lacks."""
        needed: list[set[str]] = []
        for item in detection.detection_items:
            if isinstance(item, SigmaDetection):
                needed.append(self._prune(item, columns, name, positive))
            elif item.field is not None and item.field not in columns:
                needed.append({item.field})
            else:
                needed.append(set())
        alternatives = detection.item_linking is ConditionOR and len(needed) > 1
        if not alternatives:
            return set().union(*needed)
        usable = [
            item for item, miss in zip(detection.detection_items, needed, strict=True) if not miss
        ]
        if len(usable) == len(needed):
            return set()
        dropped = set().union(*needed)
        if not usable or not positive:
            return dropped
        detection.detection_items = usable
        fields = self._sigma_names(", ".join(sorted(dropped)))
        _warn(
            self,
            f"detection '{name}': the alternative(s) on {fields} dropped ({self.table()} has no "
            "such column); the rule matches only on the others",
        )
        return set()


# --- 5. values typed by their column ----------------------------------------------------------


@dataclass
class ValuesTypedByColumn(_TableTransformation):
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
            for item in _items(detection):
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


# --- 6. wildcards inside a value --------------------------------------------------------------


@dataclass
class InnerWildcardsAsRegex(DetectionItemTransformation):
    """A wildcard inside a value becomes an anchored, case-insensitive regular expression.

    The backend splits `a?b*c` into `contains "a" and contains "b" ...`, which loses the order and
    the single-character wildcard (the rule matches more), and a literal `*` after a backslash
    loses the backslash. Leading and trailing `*` stay with contains/startswith/endswith.
    Upstream: KustoBackend.convert_condition_as_in_expression.
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


# --- the pipeline, spliced -------------------------------------------------------------------


@dataclass(frozen=True)
class _Splice:
    """Our items go right before the first backend item whose identifier ends with `before`."""

    before: str
    items: Sequence[ProcessingItem] = field(default_factory=tuple)


def _splices(
    name: str, columns_of: Callable[[str], Mapping[str, Mapping[str, str]]]
) -> list[_Splice]:
    def item(
        identifier: str, transformation: PreprocessingTransformation, **kw: Any
    ) -> ProcessingItem:
        return ProcessingItem(
            identifier=f"sentinel_deployer_{identifier}", transformation=transformation, **kw
        )

    def table(kind: type[_TableTransformation]) -> _TableTransformation:
        return kind(pipeline_name=name, columns_of=columns_of)

    mappings: list[ProcessingItem] = []
    if name == "sentinel_asim":
        # The backend maps OriginalFileName to TargetProcessFileOriginalName or
        # TargetProcessFilename; the ASIM process schema has only the first (Microsoft Learn,
        # "The ASIM Process Events normalization schema", field TargetProcessFileOriginalName:
        # https://learn.microsoft.com/en-us/azure/sentinel/normalization-schema-process-event).
        # Upstream: sentinelasim/mappings.py, imProcessCreate.
        mappings.append(
            item(
                "asim_original_file_name",
                FieldMappingTransformation({"OriginalFileName": "TargetProcessFileOriginalName"}),
                rule_conditions=[RuleProcessingStateCondition("query_table", "imProcessCreate")],
            )
        )
    levels: list[ProcessingItem] = []
    if name == "azure_monitor":

        def security_event() -> list[RuleProcessingStateCondition]:
            # A condition belongs to one item (pySigma binds it), so each gets its own.
            return [RuleProcessingStateCondition("query_table", "SecurityEvent")]

        # Upstream: azuremonitor/mappings.py has no IntegrityLevel for SecurityEvent.
        mappings.append(
            item(
                "security_event_integrity_level",
                FieldMappingTransformation({"IntegrityLevel": "MandatoryLabel"}),
                rule_conditions=security_event(),
            )
        )
        levels.append(
            item(
                "security_event_integrity_level_sids",
                IntegrityLevelAsSid(),
                rule_conditions=security_event(),
                field_name_conditions=[IncludeFieldCondition(["MandatoryLabel"])],
            )
        )
    return [
        _Splice(
            "_drop_eventid" if name != "azure_monitor" else "_table_fieldmappings",
            [
                item("keyword_detections_refused", RefuseKeywordDetections()),
                item("field_references_refused", RefuseFieldReferences()),
                item(
                    "non_windows_rule_in_windows_table", table(RefuseNonWindowsRuleInWindowsTable)
                ),
            ],
        ),
        _Splice("_table_fieldmappings", mappings),
        _Splice("_hashes_field_values", [item("hashes_by_algorithm", table(HashesByAlgorithm))]),
        _Splice(
            "_unsupported_rule_category_or_missing_query_table",
            [
                *levels,
                item("alternatives_without_column", table(AlternativesWithoutColumn)),
                item("values_typed_by_column", table(ValuesTypedByColumn)),
                item("inner_wildcards_as_regex", InnerWildcardsAsRegex()),
            ],
        ),
    ]


def spliced(
    name: str,
    backend: ProcessingPipeline,
    columns_of: Callable[[str], Mapping[str, Mapping[str, str]]],
) -> ProcessingPipeline:
    """The backend's pipeline `name` with our items at the steps they belong to."""
    # The backend's items already belong to `backend` (pySigma binds an item to one pipeline),
    # so ours join that pipeline rather than a new one; every call gets a fresh backend pipeline.
    for splice in _splices(name, columns_of):
        at = next(
            i for i, it in enumerate(backend.items) if (it.identifier or "").endswith(splice.before)
        )
        for item in splice.items:
            item.set_pipeline(backend)
        backend.items[at:at] = list(splice.items)
    backend.name = f"{backend.name}, with sentinel-deployer's fidelity items"
    return backend
