"""The alert-rule resource as the emulator stores it and as it answers with it.

A rule is stored as it was sent plus what the server owns (id, name, type, etag,
lastModifiedUtc); the api-version of each read decides which properties are shown.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from deployer.alertrule import (
    API_VERSIONS,
    READ_ONLY_PROPERTIES,
    parse_duration,
    scheduled_properties,
)

Resource = dict[str, Any]
# (subscription, resource group, workspace), spelled as the client spelled them.
WorkspaceRef = tuple[str, str, str]

RESOURCE_TYPE = "Microsoft.SecurityInsights/alertRules"
DURATION_STYLES = ("canonical", "alternate")

# NOTE: what the service adds to a rule that left these out. The official example
# CreateScheduledAlertRule.json answers (200 and 201) with `alertRuleTemplateName: null`, which the
# request did not send; GetAllAlertRules.json (same examples folder of azure-rest-api-specs) shows
# `description: null` on a rule that has none. Nothing documents defaults for the other optional
# properties, so the emulator leaves them out rather than guess. (GetScheduledAlertRule.json also
# shows alertTacticsColumnName and alertSeverityColumnName as null inside alertDetailsOverride,
# but the create example answers without them; the emulator follows the create example.)
SERVER_DEFAULTS: dict[str, Any] = {"alertRuleTemplateName": None, "description": None}
_DURATION_PATHS = (
    ("queryFrequency",),
    ("queryPeriod",),
    ("suppressionDuration",),
    ("incidentConfiguration", "groupingConfiguration", "lookbackDuration"),
)


def workspace_id(ref: WorkspaceRef) -> str:
    """The ARM id of a Log Analytics workspace."""
    subscription, resource_group, workspace = ref
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.OperationalInsights/workspaces/{workspace}"
    )


def rule_id(ref: WorkspaceRef, rule: str) -> str:
    """The ARM id of an alert rule, as the `id` of the example responses spells it."""
    return f"{workspace_id(ref)}/providers/Microsoft.SecurityInsights/alertRules/{rule}"


def new_etag() -> str:
    """A fresh etag, a quoted GUID like the example's `"0300bf09-0000-0000-0000-5c37296e0000"`."""
    return f'"{uuid.uuid4()}"'


def utc_now() -> str:
    """The time of a write as lastModifiedUtc spells it."""
    # NOTE: seven fractional digits and a Z, as in GetAllAlertRules.json
    # ("2019-09-04T12:05:35.7296311Z"); clients must parse more digits than Python's six.
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond:06d}0Z"


def stored_rule(ref: WorkspaceRef, rule: str, kind: Any, properties: dict[str, Any]) -> Resource:
    """What a write stores: the sent properties plus everything the server owns."""
    return {
        "id": rule_id(ref, rule),
        "name": rule,
        "type": RESOURCE_TYPE,
        "kind": kind,
        "etag": new_etag(),
        "properties": {**copy.deepcopy(properties), "lastModifiedUtc": utc_now()},
    }


def rendered(resource: Resource, api_version: str, duration_style: str) -> Resource:
    """A stored rule as a read in `api_version` returns it."""
    answer = copy.deepcopy(resource)
    properties = answer.get("properties")
    if answer.get("kind") != "Scheduled" or not isinstance(properties, dict):
        return answer
    # NOTE: the emulator guesses that a property the api-version does not describe (subTechniques
    # written with 2025-10-01-preview, read with 2025-12-01) is left out, as generated services
    # serialize each version's own model.
    known = scheduled_properties(API_VERSIONS[api_version])
    shown = {k: v for k, v in properties.items() if k in known or k in READ_ONLY_PROPERTIES}
    shown = {**SERVER_DEFAULTS, **shown}
    if duration_style == "alternate":
        _respell_durations(shown)
    answer["properties"] = shown
    return answer


def alternate_duration(text: str) -> str:
    """The same duration spelled in the next smaller unit: PT1H -> PT60M, P1D -> PT24H."""
    try:
        seconds = int(parse_duration(text).total_seconds())
    except ValueError:
        return text
    if seconds and seconds % 86400 == 0:
        return f"PT{seconds // 3600}H"
    if seconds and seconds % 3600 == 0:
        return f"PT{seconds // 60}M"
    return f"PT{seconds}S"


def _respell_durations(properties: dict[str, Any]) -> None:
    # NOTE: the emulator's own behaviour, for testing clients: the service is free to answer an
    # equal duration in another spelling (ISO 8601 allows PT60M for PT1H), so a client that
    # compares strings would see drift that is not there.
    for path in _DURATION_PATHS:
        holder: Any = properties
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(holder.get(path[-1]), str):
            holder[path[-1]] = alternate_duration(holder[path[-1]])
