"""Rules the backend would turn into KQL that is invalid or can never match: refused, with why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sigma.exceptions import SigmaTransformationError
from sigma.processing.transformations.base import (
    PreprocessingTransformation,
)
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaFieldReference,
)

from deployer.pipelines.detections import TableTransformation, detection_items

# Tables that hold Windows events only (Log Analytics table reference, SecurityEvent: "Security
# events collected from Windows machines").
WINDOWS_ONLY_TABLES = frozenset({"SecurityEvent"})


# --- keyword detections -------------------------------------------------------------------


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
            if any(item.field is None for item in detection_items(detection)):
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
            for item in detection_items(detection):
                if any(isinstance(value, SigmaFieldReference) for value in item.value):
                    raise SigmaTransformationError(
                        f"detection '{name}' compares field {item.field} with another field "
                        "(|fieldref), which the kusto backend cannot convert"
                    )


# --- log sources routed to tables that cannot hold them ------------------------------------


@dataclass
class RefuseNonWindowsRuleInWindowsTable(TableTransformation):
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
