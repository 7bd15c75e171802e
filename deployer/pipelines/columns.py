"""Fields the rule's table has no column for, Hashes included: dropped where safe, else refused."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sigma.conditions import (
    ConditionOR,
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
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    SigmaExists,
)

from deployer.pipelines.detections import (
    TableTransformation,
    alternatives_only,
    negated_detections,
    warn,
)

# --- Hashes: `|exists`, and algorithms the table has no column for ------------------------

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
class HashesByAlgorithm(TableTransformation):
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


# --- alternatives on columns the table lacks -----------------------------------------------


@dataclass
class AlternativesWithoutColumn(TableTransformation):
    """Fields the table has no column for: an `or` alternative is dropped, anything else refused.

    An alternative may go only where the rule then matches less: inside a detection that every
    condition uses plainly (not under `not`), and only when another alternative is left; a
    whole detection only where it is one alternative of the condition's `or` (alternatives_only).
    The backend refuses the whole rule for one alternative (SigmaHQ's `Image|endswith` or
    `OriginalFileName` pairs), with a message that grows with each rule it refuses (its
    InvalidFieldTransformation appends to its own message). Upstream: kusto_common/errors.py.
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
                warn(
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
        warn(
            self,
            f"detection '{name}': the alternative(s) on {fields} dropped ({self.table()} has no "
            "such column); the rule matches only on the others",
        )
        return set()
