"""The plan: desired rules against the workspace, normalised, with ownership and drift."""

from __future__ import annotations

import copy
from typing import Any

from deployer.fingerprint import Owner, with_marker
from deployer.plan import DesiredRule, Plan, make_plan, plans_from_json, plans_to_json

OWNER = Owner("detections", "prod")
RULE_ID = "9a019ffc-3580-4c9d-8d87-079f7e8d3fd4"
PROPERTIES: dict[str, Any] = {
    "displayName": "Cloudflared Tunnel Execution",
    "description": "Detects cloudflared.",
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
    "techniques": ["T1102"],
}


def _desired(**changes: Any) -> DesiredRule:
    properties = with_marker({**PROPERTIES, **changes}, OWNER)
    return DesiredRule(RULE_ID, {"kind": "Scheduled", "properties": properties}, "rules/r.yml")


def _remote(
    properties: dict[str, Any], *, name: str = RULE_ID, etag: str = '"e1"'
) -> dict[str, Any]:
    return {"name": name, "etag": etag, "kind": "Scheduled", "properties": properties}


def _plan(desired: list[DesiredRule], remote: list[dict[str, Any]], prune: bool = False) -> Plan:
    return make_plan(
        desired, remote, owner=OWNER, prune=prune, target="t", tool_version="0", source_hash="h"
    )


def test_a_missing_rule_is_a_create() -> None:
    (change,) = _plan([_desired()], []).changes
    assert change.action == "create" and change.etag is None


def test_what_we_deployed_and_nobody_touched_is_unchanged_whatever_the_spelling() -> None:
    deployed = copy.deepcopy(_desired().body["properties"])
    deployed.update(queryFrequency="PT60M", lastModifiedUtc="2026-12-01T00:00:00Z")
    (change,) = _plan([_desired()], [_remote(deployed)]).changes
    assert change.action == "unchanged"


def test_a_changed_rule_is_an_update_with_field_and_query_diffs() -> None:
    deployed = _desired().body["properties"]
    wanted = _desired(severity="High", query=PROPERTIES["query"].replace("tunnel", "tunnel run"))
    (change,) = _plan([wanted], [_remote(dict(deployed))]).changes
    assert change.action == "update" and change.etag == '"e1"'
    assert [f.path for f in change.fields] == ["query", "severity"]
    assert (
        change.query_diff is not None
        and '+| where TargetProcessCommandLine contains " tunnel run "' in change.query_diff
    )


def test_a_query_diff_keeps_one_line_per_line_when_the_query_has_no_final_newline() -> None:
    old = 'imProcessCreate\n| where TargetProcessCommandLine contains "evil"'
    deployed = _desired(query=old).body["properties"]
    wanted = _desired(query=old.replace('"evil"', '"evil.exe"'))
    (change,) = _plan([wanted], [_remote(dict(deployed))]).changes
    assert change.query_diff is not None
    assert change.query_diff.splitlines()[-2:] == [
        '-| where TargetProcessCommandLine contains "evil"',
        '+| where TargetProcessCommandLine contains "evil.exe"',
    ]


def test_a_rule_edited_in_the_portal_is_drift() -> None:
    edited = {**_desired().body["properties"], "enabled": False}
    (change,) = _plan([_desired()], [_remote(edited)]).changes
    assert change.action == "drift"
    assert [f.path for f in change.fields] == ["enabled"]


def test_a_rule_made_elsewhere_with_equal_properties_is_adopted() -> None:
    (change,) = _plan([_desired()], [_remote(dict(PROPERTIES))]).changes
    assert change.action == "adopt" and not change.fields


def test_another_projects_rule_is_a_conflict_never_overwritten() -> None:
    theirs = with_marker(PROPERTIES, Owner("other", "prod"))
    (change,) = _plan([_desired()], [_remote(theirs)]).changes
    assert change.action == "conflict" and "project other" in (change.note or "")


def test_our_rule_no_longer_in_rules_is_deleted_only_with_prune() -> None:
    ours = _remote(_desired().body["properties"], name="11111111-1111-1111-1111-111111111111")
    portal = _remote(dict(PROPERTIES), name="22222222-2222-2222-2222-222222222222")
    assert [c.action for c in _plan([], [ours, portal]).changes] == ["orphan"]
    assert [c.action for c in _plan([], [ours, portal], prune=True).changes] == ["delete"]


def test_a_saved_plan_reads_back_the_same() -> None:
    plan = _plan([_desired(severity="High")], [_remote(_desired().body["properties"])])
    assert plans_from_json(plans_to_json([plan])) == [plan]
