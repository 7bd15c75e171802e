"""The alert-rule model reads as a specification: a valid body, one change, the problem named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployer.alertrule import format_duration, parse_duration, scheduled_rule_problems

GA = "2025-12-01"
PREVIEW = "2025-10-01-preview"

Change = Callable[[dict[str, Any]], None]


def _seed_body() -> dict[str, Any]:
    """The PUT body of the seed rule (Cloudflared Tunnel Execution), as a deploy sends it."""
    return {
        "kind": "Scheduled",
        "properties": {
            "displayName": "Cloudflared Tunnel Execution",
            "description": 'Detects execution of the "cloudflared" tool to connect back to a '
            "tunnel.\n\nFalse positives:\n- Legitimate usage of Cloudflared tunnel.",
            "severity": "Medium",
            "enabled": True,
            "query": 'imProcessCreate\n| where TargetProcessCommandLine contains " tunnel "\n',
            "queryFrequency": "PT1H",
            "queryPeriod": "PT1H",
            "triggerOperator": "GreaterThan",
            "triggerThreshold": 0,
            "suppressionDuration": "PT5H",
            "suppressionEnabled": False,
            "tactics": ["CommandAndControl"],
            "techniques": ["T1102", "T1090", "T1572"],
            "entityMappings": [
                {
                    "entityType": "Host",
                    "fieldMappings": [{"identifier": "HostName", "columnName": "DvcHostname"}],
                },
                {
                    "entityType": "Account",
                    "fieldMappings": [{"identifier": "FullName", "columnName": "ActorUsername"}],
                },
                {
                    "entityType": "Process",
                    "fieldMappings": [
                        {"identifier": "ProcessId", "columnName": "TargetProcessId"},
                        {"identifier": "CommandLine", "columnName": "TargetProcessCommandLine"},
                    ],
                },
            ],
            "incidentConfiguration": {
                "createIncident": True,
                "groupingConfiguration": {
                    "enabled": False,
                    "reopenClosedIncident": False,
                    "lookbackDuration": "PT5H",
                    "matchingMethod": "AllEntities",
                },
            },
            "eventGroupingSettings": {"aggregationKind": "SingleAlert"},
        },
    }


def _set(name: str, value: Any) -> Change:
    def change(properties: dict[str, Any]) -> None:
        properties[name] = value

    return change


def _set_all(**values: Any) -> Change:
    def change(properties: dict[str, Any]) -> None:
        properties.update(values)

    return change


def _delete(name: str) -> Change:
    def change(properties: dict[str, Any]) -> None:
        del properties[name]

    return change


def _entities(count: int) -> list[dict[str, Any]]:
    return [
        {"entityType": "Host", "fieldMappings": [{"identifier": "HostName", "columnName": "H"}]}
        for _ in range(count)
    ]


def _field_mappings(count: int, entity_type: str = "Host") -> list[dict[str, Any]]:
    """One entity identified by `count` columns."""
    fields = [{"identifier": f"Id{i}", "columnName": f"C{i}"} for i in range(count)]
    return [{"entityType": entity_type, "fieldMappings": fields}]


def _custom_details(count: int) -> dict[str, str]:
    return {f"Detail{i}": "TargetProcessName" for i in range(count)}


def _lookback(value: str) -> Change:
    def change(properties: dict[str, Any]) -> None:
        properties["incidentConfiguration"]["groupingConfiguration"]["lookbackDuration"] = value

    return change


def _problems(change: Change, api_version: str = GA) -> list[str]:
    body = _seed_body()
    change(body["properties"])
    return scheduled_rule_problems(body, api_version)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("PT5M", timedelta(minutes=5)),
        ("PT1H", timedelta(hours=1)),
        ("PT45S", timedelta(seconds=45)),
        ("P1D", timedelta(days=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P14D", timedelta(days=14)),
        ("P2DT3H4M5S", timedelta(days=2, hours=3, minutes=4, seconds=5)),
        ("PT0S", timedelta()),
    ],
)
def test_a_duration_in_its_shortest_form_parses_and_formats_back_to_the_same_text(
    text: str, value: timedelta
) -> None:
    assert parse_duration(text) == value
    assert format_duration(value) == text


@pytest.mark.parametrize(
    ("text", "shortest"),
    [("PT90M", "PT1H30M"), ("PT24H", "P1D"), ("PT3600S", "PT1H"), ("P0D", "PT0S")],
)
def test_a_longer_spelling_of_a_duration_is_formatted_in_its_shortest_form(
    text: str, shortest: str
) -> None:
    assert format_duration(parse_duration(text)) == shortest


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=400 * 86400).map(lambda s: timedelta(seconds=s)))
def test_any_whole_second_duration_survives_format_then_parse(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize(
    "text",
    [
        "5 minutes",
        "P",
        "PT",
        "1H",
        "",
        "pt5m",
        "P1DT",
        "PT1.5H",
        "-PT5M",
        " PT5M",
        "PT5M\n",
        "PT\uff15M",  # a full-width digit five: ISO 8601 digits are ASCII
    ],
)
def test_what_is_not_an_iso_8601_duration_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="is not an ISO 8601 duration"):
        parse_duration(text)


# --------------------------------------------------------------------------- valid bodies


def test_the_seed_rule_body_has_no_problems_in_either_api_version() -> None:
    assert scheduled_rule_problems(_seed_body(), GA) == []
    assert scheduled_rule_problems(_seed_body(), PREVIEW) == []


def test_sub_techniques_are_a_property_of_the_preview_api_version() -> None:
    assert _problems(_set("subTechniques", ["T1071.001"]), PREVIEW) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set_all(queryFrequency="PT5M", queryPeriod="PT5M"), id="shortest-schedule"),
        pytest.param(_set_all(queryFrequency="P14D", queryPeriod="P14D"), id="longest-schedule"),
        pytest.param(_set_all(queryFrequency="PT1H", queryPeriod="P2D"), id="hourly-over-2-days"),
        pytest.param(_set("suppressionDuration", "PT24H"), id="suppression-24h"),
        pytest.param(_set("triggerThreshold", 10000), id="threshold-10000"),
        pytest.param(_set("entityMappings", _entities(10)), id="10-entities"),
        pytest.param(_set("entityMappings", _field_mappings(3)), id="3-field-mappings"),
        pytest.param(_set("customDetails", _custom_details(20)), id="20-custom-details"),
        pytest.param(_set("customDetails", {"A_b1": "X"}), id="custom-detail-key-letters-digits"),
        pytest.param(_set("query", "T\n| where X == 1\n".ljust(10000, " ")), id="query-10000"),
        pytest.param(_lookback("P7D"), id="lookback-7-days"),
        pytest.param(_set("templateVersion", "1.0.0"), id="template-version"),
    ],
)
def test_values_at_the_service_limits_are_accepted(change: Change) -> None:
    assert _problems(change) == []


# --------------------------------------------------------------------------- problems


@pytest.mark.parametrize(
    "name",
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
def test_a_missing_required_property_is_named(name: str) -> None:
    assert _problems(_delete(name)) == [f"properties.{name}: required"]


@pytest.mark.parametrize(
    ("change", "api_version", "path", "reason"),
    [
        pytest.param(
            _set("subTechniques", ["T1071.001"]),
            GA,
            "properties.subTechniques",
            "not a property of a Scheduled rule in 2025-12-01",
            id="sub-techniques-on-ga",
        ),
        pytest.param(
            _set("lastModifiedUtc", "2026-01-01T00:00:00Z"),
            GA,
            "properties.lastModifiedUtc",
            "read-only",
            id="read-only",
        ),
        pytest.param(
            _set("severity", "Critical"), GA, "properties.severity", "'Critical'", id="severity"
        ),
        pytest.param(
            _set("tactics", ["command-and-control"]),
            GA,
            "properties.tactics[0]",
            "'command-and-control' is not one of",
            id="tactic-sigma-spelling",
        ),
        pytest.param(
            _set("enabled", "yes"), GA, "properties.enabled", "true or false", id="enabled-text"
        ),
        pytest.param(
            _set("triggerThreshold", 1.5),
            GA,
            "properties.triggerThreshold",
            "expected an integer",
            id="threshold-float",
        ),
        pytest.param(
            _set("triggerThreshold", True),
            GA,
            "properties.triggerThreshold",
            "expected an integer",
            id="threshold-bool",
        ),
        pytest.param(
            _set("query", "T\n| where X == 1\n".ljust(10001, " ")),
            GA,
            "properties.query",
            "10,001 characters, the service allows 10,000",
            id="query-too-long",
        ),
        pytest.param(
            _set("query", "search * | where X == 1\n"),
            GA,
            "properties.query",
            "'search *'",
            id="search-star",
        ),
        pytest.param(_set("query", "  \n"), GA, "properties.query", "empty", id="blank-query"),
        pytest.param(
            _set("queryFrequency", "PT1M"),
            GA,
            "properties.queryFrequency",
            "between PT5M and P14D",
            id="frequency-1-minute",
        ),
        pytest.param(
            _set("queryFrequency", "P15D"),
            GA,
            "properties.queryFrequency",
            "between PT5M and P14D",
            id="frequency-15-days",
        ),
        pytest.param(
            _set("queryPeriod", "P15D"),
            GA,
            "properties.queryPeriod",
            "between PT5M and P14D",
            id="period-15-days",
        ),
        pytest.param(
            _set_all(queryFrequency="PT2H", queryPeriod="PT1H"),
            GA,
            "properties.queryFrequency",
            "must not be longer than queryPeriod",
            id="frequency-longer-than-period",
        ),
        pytest.param(
            _set_all(queryFrequency="PT30M", queryPeriod="P2D"),
            GA,
            "properties.queryFrequency",
            "at least PT1H when queryPeriod is P2D or longer",
            id="frequent-over-long-period",
        ),
        pytest.param(
            _set("queryFrequency", "5 minutes"),
            GA,
            "properties.queryFrequency",
            "is not an ISO 8601 duration",
            id="frequency-not-iso",
        ),
        pytest.param(
            _set("suppressionDuration", "PT25H"),
            GA,
            "properties.suppressionDuration",
            "at most PT24H",
            id="suppression-25h",
        ),
        pytest.param(
            _set("triggerThreshold", 10001),
            GA,
            "properties.triggerThreshold",
            "between 0 and 10000",
            id="threshold-10001",
        ),
        pytest.param(
            _set("triggerThreshold", -1),
            GA,
            "properties.triggerThreshold",
            "between 0 and 10000",
            id="threshold-negative",
        ),
        pytest.param(
            _set("techniques", ["T1071.001"]),
            GA,
            "properties.techniques[0]",
            "not of the form T####",
            id="sub-technique-in-techniques",
        ),
        pytest.param(
            _set("techniques", ["T1071\n"]),
            GA,
            "properties.techniques[0]",
            "not of the form T####",
            id="technique-with-trailing-newline",
        ),
        pytest.param(
            _set("subTechniques", ["T1071"]),
            PREVIEW,
            "properties.subTechniques[0]",
            "not of the form T####.###",
            id="technique-in-sub-techniques",
        ),
        pytest.param(
            _set("entityMappings", _entities(11)),
            GA,
            "properties.entityMappings",
            "11 entities, at most 10",
            id="11-entities",
        ),
        pytest.param(
            _set("entityMappings", _field_mappings(4)),
            GA,
            "properties.entityMappings[0].fieldMappings",
            "4 identifiers, each entity takes 1 to 3",
            id="4-field-mappings",
        ),
        pytest.param(
            _set("entityMappings", _field_mappings(1, entity_type="Computer")),
            GA,
            "properties.entityMappings[0].entityType",
            "'Computer' is not one of",
            id="unknown-entity-type",
        ),
        pytest.param(
            _set("entityMappings", _field_mappings(0)),
            GA,
            "properties.entityMappings[0].fieldMappings",
            "0 identifiers, each entity takes 1 to 3",
            id="entity-without-field-mappings",
        ),
        pytest.param(
            _set("customDetails", _custom_details(21)),
            GA,
            "properties.customDetails",
            "21 keys, at most 20",
            id="21-custom-details",
        ),
        pytest.param(
            _set("customDetails", {"1st detail": "TargetProcessName"}),
            GA,
            "properties.customDetails.1st detail",
            "starting with a letter",
            id="bad-custom-detail-key",
        ),
        pytest.param(
            _set("customDetails", {"Name": 1}),
            GA,
            "properties.customDetails.Name",
            "expected a string",
            id="custom-detail-value-not-text",
        ),
        pytest.param(
            _lookback("P8D"),
            GA,
            "properties.incidentConfiguration.groupingConfiguration.lookbackDuration",
            "between PT5M and P7D",
            id="lookback-8-days",
        ),
        pytest.param(
            _set("incidentConfiguration", {"groupingConfiguration": {}}),
            GA,
            "properties.incidentConfiguration",
            "required",
            id="incident-configuration-incomplete",
        ),
        pytest.param(
            _set("eventGroupingSettings", {"aggregationKind": "SingleAlert", "extra": 1}),
            GA,
            "properties.eventGroupingSettings.extra",
            "not a known property",
            id="unknown-nested-property",
        ),
    ],
)
def test_each_broken_rule_is_reported_at_its_json_path(
    change: Change, api_version: str, path: str, reason: str
) -> None:
    problems = _problems(change, api_version)
    assert problems, "the change should have been reported"
    assert all(p.startswith(path) for p in problems), problems
    assert any(reason in p for p in problems), problems


def test_an_unknown_api_version_is_the_only_problem_reported() -> None:
    problems = scheduled_rule_problems(_seed_body(), "2021-10-01")
    assert len(problems) == 1
    assert problems[0].startswith("api-version '2021-10-01' is not supported")
    assert GA in problems[0]
    assert PREVIEW in problems[0]


def test_a_body_must_be_a_scheduled_rule_with_only_writable_members() -> None:
    body = _seed_body()
    body["kind"] = "NRT"
    body["id"] = "/subscriptions/x"
    assert scheduled_rule_problems(body, GA) == [
        "kind: expected 'Scheduled', got 'NRT'",
        "id: not a writable member of an alert rule body",
    ]


def test_a_body_without_properties_says_so() -> None:
    assert scheduled_rule_problems({"kind": "Scheduled"}, GA) == [
        "properties: missing or not an object"
    ]
