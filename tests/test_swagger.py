"""Tests for tests/swagger.py (checks alert-rule bodies against the official swagger)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from swagger import (
    ENV_VAR,
    SUPPORTED_API_VERSIONS,
    is_iso8601_duration,
    reference_dir,
    scheduled_rule_errors,
    scheduled_rule_schema,
)

REFERENCE = reference_dir()
if REFERENCE is None:
    pytest.skip(
        "Microsoft.SecurityInsights swagger not available: no <repo>/../shared/reference/"
        f"securityinsights and {ENV_VAR} is not set",
        allow_module_level=True,
    )

STABLE = "2025-12-01"
PREVIEW = "2025-10-01-preview"
EXAMPLE = "stable-2025-12-01/examples/alertRules/CreateScheduledAlertRule.json"


def _example() -> dict[str, Any]:
    assert REFERENCE is not None
    data = json.loads((REFERENCE / EXAMPLE).read_text(encoding="utf-8"))
    body = data["parameters"]["alertRule"]
    assert body["kind"] == "Scheduled"
    return copy.deepcopy(body)


@pytest.fixture
def body() -> dict[str, Any]:
    return _example()


def _errors_at(errors: list[str], path: str) -> list[str]:
    return [e for e in errors if e.startswith(f"{path}: ")]


# --------------------------------------------------------------------------- happy path


@pytest.mark.parametrize("api_version", sorted(SUPPORTED_API_VERSIONS))
def test_official_example_is_valid(body: dict[str, Any], api_version: str) -> None:
    assert scheduled_rule_errors(body, api_version=api_version) == []


def test_etag_is_writable(body: dict[str, Any]) -> None:
    body["etag"] = '"abc"'
    assert scheduled_rule_errors(body) == []


def test_explicit_reference_argument(body: dict[str, Any]) -> None:
    assert REFERENCE is not None
    assert scheduled_rule_errors(body, reference=REFERENCE) == []


# --------------------------------------------------------------------------- required


@pytest.mark.parametrize(
    "prop",
    [
        "displayName",
        "enabled",
        "severity",
        "query",
        "queryFrequency",
        "queryPeriod",
        "triggerOperator",
        "triggerThreshold",
        "suppressionEnabled",
        "suppressionDuration",
    ],
)
def test_missing_required_property(body: dict[str, Any], prop: str) -> None:
    del body["properties"][prop]
    errors = scheduled_rule_errors(body)
    assert errors == [f"properties.{prop}: required by ScheduledAlertRuleProperties but missing"]


def test_missing_kind(body: dict[str, Any]) -> None:
    del body["kind"]
    assert scheduled_rule_errors(body) == ["kind: required by ScheduledAlertRule but missing"]


def test_properties_object_itself_is_not_required_by_swagger(body: dict[str, Any]) -> None:
    # Notable: the swagger does not list `properties` as required on ScheduledAlertRule.
    del body["properties"]
    assert scheduled_rule_errors(body) == []


def test_nested_required(body: dict[str, Any]) -> None:
    del body["properties"]["incidentConfiguration"]["createIncident"]
    assert scheduled_rule_errors(body) == [
        "properties.incidentConfiguration.createIncident: required by IncidentConfiguration"
        " but missing"
    ]


# --------------------------------------------------------------------------- enums, formats


def test_severity_enum(body: dict[str, Any]) -> None:
    body["properties"]["severity"] = "Critical"
    (error,) = scheduled_rule_errors(body)
    assert error.startswith("properties.severity: 'Critical' is not one of")
    assert "AlertSeverity" in error


def test_tactic_enum(body: dict[str, Any]) -> None:
    body["properties"]["tactics"] = ["command-and-control"]
    (error,) = scheduled_rule_errors(body)
    assert error.startswith("properties.tactics[0]: 'command-and-control' is not one of")
    assert "CommandAndControl" in error


def test_kind_selects_another_model(body: dict[str, Any]) -> None:
    body["kind"] = "Fusion"
    assert scheduled_rule_errors(body) == [
        "kind: 'Fusion' does not select ScheduledAlertRule (discriminator value 'Scheduled')"
    ]


def test_nested_enum_path(body: dict[str, Any]) -> None:
    body["properties"]["entityMappings"][1]["entityType"] = "IPAddress"
    (error,) = scheduled_rule_errors(body)
    assert error.startswith("properties.entityMappings[1].entityType: 'IPAddress' is not one of")


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("queryFrequency", "5 minutes"),
        ("queryPeriod", "PT"),
        ("suppressionDuration", "1h"),
    ],
)
def test_duration_format(body: dict[str, Any], prop: str, value: str) -> None:
    body["properties"][prop] = value
    assert scheduled_rule_errors(body) == [
        f"properties.{prop}: {value!r} is not an ISO 8601 duration (format: duration),"
        " e.g. PT5H, P1D, PT1H30M"
    ]


def test_nested_duration_format(body: dict[str, Any]) -> None:
    body["properties"]["incidentConfiguration"]["groupingConfiguration"]["lookbackDuration"] = "5h"
    (error,) = scheduled_rule_errors(body)
    assert error.startswith(
        "properties.incidentConfiguration.groupingConfiguration.lookbackDuration: '5h' is not"
    )


@pytest.mark.parametrize(
    "value", ["PT5H", "P1D", "PT1H30M", "P2DT1H30M", "PT5M", "P14D", "P1W", "PT0.5S", "P1Y2M"]
)
def test_iso8601_durations_accepted(value: str) -> None:
    assert is_iso8601_duration(value)


@pytest.mark.parametrize(
    "value", ["", "P", "PT", "P1DT", "5 minutes", "pt5h", "-PT5M", "PT1.5H30M", "P1W2D", "PT5H "]
)
def test_iso8601_durations_rejected(value: str) -> None:
    assert not is_iso8601_duration(value)


def test_type_and_int32(body: dict[str, Any]) -> None:
    body["properties"]["triggerThreshold"] = "0"
    body["properties"]["enabled"] = "true"
    assert scheduled_rule_errors(body) == [
        "properties.enabled: 'true' is not of type 'boolean'",
        "properties.triggerThreshold: '0' is not of type 'integer'",
    ]
    body = _example()
    body["properties"]["triggerThreshold"] = 2**31
    assert scheduled_rule_errors(body) == [
        "properties.triggerThreshold: 2147483648 is outside the int32 range"
    ]


# --------------------------------------------------------------------------- unknown / readOnly


def test_sub_techniques_only_in_preview(body: dict[str, Any]) -> None:
    body["properties"]["subTechniques"] = ["T1102.001"]
    assert scheduled_rule_errors(body, api_version=STABLE) == [
        "properties.subTechniques: not a property of ScheduledAlertRuleProperties in 2025-12-01"
    ]
    assert scheduled_rule_errors(body, api_version=PREVIEW) == []


def test_preview_only_fields_and_enum_values(body: dict[str, Any]) -> None:
    props = body["properties"]
    props["sentinelEntitiesMappings"] = [{"columnName": "Computer"}]
    props["alertDetailsOverride"]["alertDynamicProperties"].append(
        {"alertProperty": "SubTechniques", "value": "SubTechniqueColumn"}
    )
    assert scheduled_rule_errors(body, api_version=PREVIEW) == []
    stable = scheduled_rule_errors(body, api_version=STABLE)
    assert len(stable) == 2
    assert (
        "properties.sentinelEntitiesMappings: not a property of ScheduledAlertRuleProperties"
        " in 2025-12-01"
    ) in stable
    assert _errors_at(
        stable, "properties.alertDetailsOverride.alertDynamicProperties[3].alertProperty"
    )


def test_unknown_property_in_properties(body: dict[str, Any]) -> None:
    body["properties"]["queryFrequencyMinutes"] = 5
    assert scheduled_rule_errors(body) == [
        "properties.queryFrequencyMinutes: not a property of ScheduledAlertRuleProperties"
        " in 2025-12-01"
    ]


def test_unknown_top_level_and_nested_properties(body: dict[str, Any]) -> None:
    body["location"] = "westeurope"
    body["properties"]["entityMappings"][0]["fieldMappings"][0]["column"] = "Computer"
    assert scheduled_rule_errors(body) == [
        "location: not a property of ScheduledAlertRule in 2025-12-01",
        "properties.entityMappings[0].fieldMappings[0].column: not a property of FieldMapping"
        " in 2025-12-01",
    ]


def test_custom_details_is_an_open_map(body: dict[str, Any]) -> None:
    body["properties"]["customDetails"]["AnyKey"] = "AnyColumn"
    assert scheduled_rule_errors(body) == []
    body["properties"]["customDetails"]["Count"] = 3
    assert scheduled_rule_errors(body) == [
        "properties.customDetails.Count: 3 is not of type 'string'"
    ]


@pytest.mark.parametrize(
    ("location", "prop", "value", "owner"),
    [
        ("properties", "lastModifiedUtc", "2021-03-01T13:17:30Z", "ScheduledAlertRuleProperties"),
        (None, "id", "/subscriptions/x", "Resource"),
        (None, "name", "73e01a99-5cd7-4139-a149-9f2736ff2ab5", "Resource"),
        (None, "type", "Microsoft.SecurityInsights/alertRules", "Resource"),
        (None, "systemData", {}, "Resource"),
    ],
)
def test_read_only_property(
    body: dict[str, Any], location: str | None, prop: str, value: object, owner: str
) -> None:
    target = body[location] if location else body
    target[prop] = value
    path = f"{location}.{prop}" if location else prop
    assert scheduled_rule_errors(body) == [
        f"{path}: read-only property of {owner}; must not be sent in a request body"
    ]


def test_get_response_is_not_a_valid_put_body() -> None:
    assert REFERENCE is not None
    data = json.loads((REFERENCE / EXAMPLE).read_text(encoding="utf-8"))
    errors = scheduled_rule_errors(data["responses"]["201"]["body"])
    assert errors == [
        "id: read-only property of Resource; must not be sent in a request body",
        "name: read-only property of Resource; must not be sent in a request body",
        "properties.alertRuleTemplateName: None is not of type 'string'",
        "properties.lastModifiedUtc: read-only property of ScheduledAlertRuleProperties;"
        " must not be sent in a request body",
        "type: read-only property of Resource; must not be sent in a request body",
    ]


# --------------------------------------------------------------------------- schema, plumbing


def test_schema_shape() -> None:
    schema = scheduled_rule_schema()
    assert schema["title"] == "ScheduledAlertRule"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["kind"]["const"] == "Scheduled"
    props = schema["properties"]["properties"]
    assert props["title"] == "ScheduledAlertRuleProperties"
    assert "subTechniques" not in props["properties"]
    assert props["properties"]["techniques"]["items"] == {"type": "string"}  # no T#### pattern
    preview = scheduled_rule_schema(api_version=PREVIEW)["properties"]["properties"]
    assert "subTechniques" in preview["properties"]


def test_unknown_api_version(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="unsupported api_version"):
        scheduled_rule_errors(body, api_version="2023-02-01")


def test_non_json_body() -> None:
    errors = scheduled_rule_errors({"kind": "Scheduled", "properties": {"x": object()}})
    assert len(errors) == 1 and errors[0].startswith("<body>: not JSON-serialisable")


def test_reference_dir_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert REFERENCE is not None
    monkeypatch.setenv(ENV_VAR, str(REFERENCE))
    assert reference_dir() == REFERENCE
    # An env var pointing at a folder without the swagger falls back to <repo>/../shared.
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert reference_dir() in (REFERENCE, None)
