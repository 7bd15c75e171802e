"""Our processing items in the backend's pipelines: KQL that means what the Sigma rule means.

Each item fixes one defect of pySigma-backend-kusto 1.0.1's pipelines and is named for it
(refusals.py, columns.py, values.py); tests/test_pipelines.py shows the bare backend's output
beside ours. `spliced` puts them into a backend pipeline at the step each one belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sigma.processing.conditions import IncludeFieldCondition, RuleProcessingStateCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation
from sigma.processing.transformations.base import PreprocessingTransformation

from deployer.pipelines.columns import AlternativesWithoutColumn, HashesByAlgorithm
from deployer.pipelines.detections import TableTransformation
from deployer.pipelines.refusals import (
    RefuseFieldReferences,
    RefuseKeywordDetections,
    RefuseNonWindowsRuleInWindowsTable,
)
from deployer.pipelines.values import (
    InnerWildcardsAsRegex,
    IntegrityLevelAsSid,
    ValuesTypedByColumn,
)


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

    def table(kind: type[TableTransformation]) -> TableTransformation:
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
