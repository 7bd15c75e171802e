"""Ownership and drift travel in the rule: the last line of its description."""

from __future__ import annotations

from typing import Any

from deployer.fingerprint import (
    Owner,
    digest,
    is_drifted,
    normalize,
    read_marker,
    with_marker,
    without_marker,
)

OWNER = Owner("detections", "prod")
PROPERTIES: dict[str, Any] = {
    "displayName": "Cloudflared Tunnel Execution",
    "description": "Detects cloudflared.\n\nReferences:\n- https://example.org",
    "severity": "Medium",
    "enabled": True,
    "query": 'imProcessCreate\n| where TargetProcessCommandLine contains " tunnel "\n',
    "queryFrequency": "PT1H",
    "queryPeriod": "P1D",
    "triggerOperator": "GreaterThan",
    "triggerThreshold": 0,
    "suppressionDuration": "PT5H",
    "suppressionEnabled": False,
    "tactics": ["CommandAndControl", "Execution"],
    "techniques": ["T1572", "T1102"],
    "eventGroupingSettings": {"aggregationKind": "SingleAlert"},
}


def test_the_ownership_line_names_project_environment_and_hash() -> None:
    owned = with_marker(PROPERTIES, OWNER)
    last = owned["description"].splitlines()[-1]
    assert last == (
        "Deployed by sentinel-deployer (project: detections, environment: prod, "
        f"sha256: {digest(PROPERTIES)})"
    )
    marker = read_marker(owned)
    assert marker is not None and OWNER.owns(marker)
    assert not Owner("detections", "dev").owns(marker)
    assert without_marker(owned) == PROPERTIES


def test_the_hash_ignores_the_ownership_line_and_spelling() -> None:
    respelled = {
        **with_marker(PROPERTIES, OWNER),
        "queryFrequency": "PT60M",
        "queryPeriod": "PT24H",
        "query": PROPERTIES["query"].replace("\n", "\r\n") + "  \n",
        "tactics": ["Execution", "CommandAndControl"],
        "techniques": ["T1102", "T1572"],
        "lastModifiedUtc": "2026-12-03T10:00:00Z",
        "alertRuleTemplateName": None,
        "entityMappings": None,
        "customDetails": {},
    }
    respelled.pop("eventGroupingSettings")
    assert digest(respelled) == digest(PROPERTIES)
    assert not is_drifted(respelled)


def test_a_changed_property_is_drift() -> None:
    edited = {**with_marker(PROPERTIES, OWNER), "severity": "High"}
    assert is_drifted(edited)


def test_a_rule_without_the_line_is_nobodys() -> None:
    assert read_marker(PROPERTIES) is None
    assert not is_drifted(PROPERTIES)


def test_names_with_separators_cannot_break_the_line() -> None:
    owned = with_marker(PROPERTIES, Owner("my project, v2", "prod (eu)"))
    marker = read_marker(owned)
    assert marker is not None
    assert (marker.project, marker.environment) == ("my-project--v2", "prod--eu-")


def test_a_description_of_only_the_line_strips_to_no_description() -> None:
    owned = with_marker({**PROPERTIES, "description": ""}, OWNER)
    assert "description" not in without_marker(owned)
    assert not is_drifted(owned)


def test_normalize_spells_durations_one_way() -> None:
    assert normalize({"queryFrequency": "PT300S", "suppressionDuration": "P0DT5H"}) == {
        "queryFrequency": "PT5M",
        "suppressionDuration": "PT5H",
    }


def test_a_rule_without_a_description_hashes_the_same_with_the_line_added() -> None:
    bare = {"displayName": "No description", "severity": "Low"}
    owned = with_marker(bare, Owner("p", "e"))
    assert without_marker(owned) == bare
    assert digest(owned) == digest(bare)
    assert not is_drifted(owned)
