"""Processing pipelines by name, and the table schemas each one targets.

The three pipelines come from pySigma-backend-kusto, with our own processing items on top of
them (items.py). The schemas are the ones the backend ships, so that queries are
checked against the same tables and columns the pipeline maps fields to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from types import MappingProxyType
from typing import Any

from sigma.pipelines.azuremonitor.azuremonitor import azure_monitor_pipeline
from sigma.pipelines.azuremonitor.tables import AZURE_MONITOR_TABLES
from sigma.pipelines.microsoftxdr.microsoftxdr import microsoft_xdr_pipeline
from sigma.pipelines.microsoftxdr.tables import MICROSOFT_XDR_TABLES
from sigma.pipelines.sentinelasim.sentinelasim import sentinel_asim_pipeline
from sigma.pipelines.sentinelasim.tables import SENTINEL_ASIM_TABLES
from sigma.processing.pipeline import ProcessingPipeline

from deployer.pipelines.items import spliced

_FACTORIES: Mapping[str, Callable[[], ProcessingPipeline]] = {
    "sentinel_asim": sentinel_asim_pipeline,
    "azure_monitor": azure_monitor_pipeline,
    "microsoft_xdr": microsoft_xdr_pipeline,
}
_TABLES: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]] = {
    "sentinel_asim": SENTINEL_ASIM_TABLES,
    "azure_monitor": AZURE_MONITOR_TABLES,
    "microsoft_xdr": MICROSOFT_XDR_TABLES,
}
PIPELINE_NAMES = tuple(_FACTORIES)

# The ASIM common fields every ASIM schema has (Microsoft Learn, "ASIM common fields"): the
# backend's shipped ASIM tables list them only as a placeholder row, "Dvc fields", so without
# these a query on DvcHostname or TimeGenerated would be reported as unknown.
_ASIM_COMMON: Mapping[str, str] = {
    "TimeGenerated": "datetime",
    "_ResourceId": "string",
    "Type": "string",
    "EventMessage": "string",
    "EventCount": "int",
    "EventStartTime": "datetime",
    "EventEndTime": "datetime",
    "EventType": "string",
    "EventSubType": "string",
    "EventResult": "string",
    "EventResultDetails": "string",
    "EventOriginalUid": "string",
    "EventOriginalType": "string",
    "EventOriginalSubType": "string",
    "EventOriginalResultDetails": "string",
    "EventSeverity": "string",
    "EventOriginalSeverity": "string",
    "EventProduct": "string",
    "EventProductVersion": "string",
    "EventVendor": "string",
    "EventSchema": "string",
    "EventSchemaVersion": "string",
    "EventReportUrl": "string",
    "EventOwner": "string",
    "Dvc": "string",
    "DvcIpAddr": "string",
    "DvcHostname": "string",
    "DvcDomain": "string",
    "DvcDomainType": "string",
    "DvcFQDN": "string",
    "DvcDescription": "string",
    "DvcId": "string",
    "DvcIdType": "string",
    "DvcMacAddr": "string",
    "DvcZone": "string",
    "DvcOs": "string",
    "DvcOsVersion": "string",
    "DvcAction": "string",
    "DvcOriginalAction": "string",
    "DvcInterface": "string",
    "DvcScopeId": "string",
    "DvcScope": "string",
    "AdditionalFields": "dynamic",
}


def processing_pipeline(name: str) -> ProcessingPipeline:
    """A fresh processing pipeline; pipelines keep per-conversion state, so never share one.

    The backend's pipeline with our own items spliced in (items.py).
    """
    return spliced(name, _FACTORIES[name](), table_columns)


def backend_pipeline(name: str) -> ProcessingPipeline:
    """The backend's pipeline as it ships, without our items (to show what they fix)."""
    return _FACTORIES[name]()


@cache
def table_columns(name: str) -> Mapping[str, Mapping[str, str]]:
    """Table -> column -> the backend's data type name, for the pipeline's target tables."""
    tables: dict[str, Mapping[str, str]] = {}
    for table, cols in _TABLES[name].items():
        # Placeholder rows such as "Dvc fields" are headings of the docs, not columns.
        columns = {col: str(info["data_type"]) for col, info in cols.items() if " " not in col}
        if name == "sentinel_asim":
            columns = {**_ASIM_COMMON, **columns}
        tables[table] = MappingProxyType(columns)
    return MappingProxyType(tables)
