"""Native rule files (`*.arm.json`): rules already written as ARM templates, read and exported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deployer.native import NativeSource, export_template, load_native

RULE: dict[str, Any] = {
    "name": "0c2d4e6f-1a3b-4c5d-8e9f-a0b1c2d3e4f5",
    "kind": "Scheduled",
    "etag": '"e1"',
    "properties": {
        "displayName": "[SOC] sign-ins [all]",
        "description": "Several failed sign-ins.",
        "severity": "Low",
        "enabled": True,
        "query": "SigninLogs | where ResultType != 0",
        "queryFrequency": "PT5M",
        "queryPeriod": "PT5M",
        "triggerOperator": "GreaterThan",
        "triggerThreshold": 10,
        "suppressionDuration": "PT1H",
        "suppressionEnabled": False,
        "tactics": ["CredentialAccess"],
        "techniques": [],
        "lastModifiedUtc": "2026-01-01T00:00:00.0000000Z",
        "alertRuleTemplateName": None,
    },
}


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "rule.arm.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_an_exported_rule_reads_back_with_the_same_properties(tmp_path: Path) -> None:
    template = export_template(RULE, "2025-12-01")
    assert isinstance(template, dict)
    # ARM would evaluate "[SOC] sign-ins [all]": the file holds the literal form.
    assert template["resources"][0]["properties"]["displayName"] == "[[SOC] sign-ins [all]"

    loaded = load_native(write(tmp_path, template))

    assert isinstance(loaded, NativeSource)
    assert loaded.rule_id == RULE["name"]
    expected = {
        k: v
        for k, v in RULE["properties"].items()
        if k not in ("lastModifiedUtc", "alertRuleTemplateName")
    }
    assert loaded.body == {"kind": "Scheduled", "properties": expected}


def test_a_name_that_would_break_out_of_the_expression_is_not_exported() -> None:
    hostile = {**RULE, "name": 'x\')]", "evil": "['}
    reason = export_template(hostile, "2025-12-01")
    assert isinstance(reason, str)
    assert "cannot be written into an ARM template safely" in reason


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["resources"].append(d["resources"][0]), "one rule per file"),
        (lambda d: d["resources"][0].update(kind="Fusion"), "only Scheduled rules"),
        (
            lambda d: d["resources"][0].update(name="[concat('a', 'b')]"),
            "resources[0].name must be",
        ),
        (
            lambda d: d["resources"][0]["properties"].update(query="[parameters('q')]"),
            "properties.query is an ARM expression",
        ),
    ],
    ids=["two-resources", "not-scheduled", "name-not-ours", "expression-value"],
)
def test_a_file_that_is_no_usable_rule_says_why(tmp_path: Path, change: Any, message: str) -> None:
    template = export_template(RULE, "2025-12-01")
    assert isinstance(template, dict)
    change(template)

    problems = load_native(write(tmp_path, template))

    assert isinstance(problems, tuple)
    assert any(message in p.message for p in problems), problems


def test_json_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rule.arm.json"
    path.write_text('{\n  "resources": [\n', encoding="utf-8")
    problems = load_native(path)
    assert isinstance(problems, tuple)
    assert "line 3" in problems[0].message
