"""What identifies a deployed rule: its normalised properties, their hash, and the ownership line.

The last line of every description this tool deploys names the tool, the project, the
environment and the hash of the properties it deployed. Ownership and drift travel in the rule
itself, so a fresh clone on another machine knows them with no local state: a rule whose
properties no longer hash to its recorded value was edited in the workspace.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deployer.alertrule import format_duration, parse_duration

_LINE = re.compile(
    r"Deployed by sentinel-deployer \(project: (?P<project>[\w.-]+), "
    r"environment: (?P<environment>[\w.-]+), sha256: (?P<digest>[0-9a-f]{16})\)"
)
_DURATIONS = ("queryFrequency", "queryPeriod", "suppressionDuration")
_SORTED_LISTS = ("tactics", "techniques", "subTechniques")
# Written by the service, never by us (API description: readOnly).
_READ_ONLY = ("lastModifiedUtc",)
# Values the service fills in when a client leaves a property out. NOTE: taken from the
# official example's response (CreateScheduledAlertRule.json); equal to absent on both sides.
_SERVER_DEFAULTS: Mapping[str, Any] = {
    "eventGroupingSettings": {"aggregationKind": "SingleAlert"},
}


@dataclass(frozen=True)
class Owner:
    """Who deploys: the project (config `[project] name`) and the environment."""

    project: str
    environment: str

    def line(self, digest: str) -> str:
        return (
            f"Deployed by sentinel-deployer (project: {_name(self.project)}, "
            f"environment: {_name(self.environment)}, sha256: {digest})"
        )

    def owns(self, marker: Marker | None) -> bool:
        return (
            marker is not None
            and marker.project == _name(self.project)
            and marker.environment == _name(self.environment)
        )


@dataclass(frozen=True)
class Marker:
    """The ownership line as found on a rule in a workspace."""

    project: str
    environment: str
    digest: str


def read_marker(properties: Mapping[str, Any]) -> Marker | None:
    """The ownership line at the end of the description, if the rule has one."""
    description = properties.get("description")
    if not isinstance(description, str):
        return None
    last = _text(description).rsplit("\n", 1)[-1]
    match = _LINE.fullmatch(last)
    if match is None:
        return None
    return Marker(match["project"], match["environment"], match["digest"])


def without_marker(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The properties with the ownership line (and the blank line before it) removed."""
    result = dict(properties)
    description = result.get("description")
    if isinstance(description, str) and read_marker(result) is not None:
        lines = _text(description).rsplit("\n", 1)
        if len(lines) == 2:
            result["description"] = lines[0].rstrip("\n")
        else:
            # The line was the whole description: the rule had none, as before it was deployed.
            del result["description"]
    return result


def with_marker(properties: Mapping[str, Any], owner: Owner) -> dict[str, Any]:
    """The properties with `owner`'s line, carrying the hash of everything else, appended."""
    bare = without_marker(properties)
    if not bare.get("description"):
        # Only the line will be there, and without_marker takes it away whole.
        bare.pop("description", None)
    line = owner.line(digest(bare))
    description = str(bare.get("description") or "")
    return {**bare, "description": f"{description}\n\n{line}" if description else line}


def digest(properties: Mapping[str, Any]) -> str:
    """Hash of the normalised properties, ownership line excluded (16 hex digits)."""
    canonical = json.dumps(
        normalize(without_marker(properties)),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def is_drifted(properties: Mapping[str, Any]) -> bool:
    """True when a rule carrying an ownership line was changed after it was deployed."""
    marker = read_marker(properties)
    return marker is not None and digest(properties) != marker.digest


def normalize(properties: Mapping[str, Any]) -> dict[str, Any]:
    """One spelling for what the service treats as equal.

    Durations in any ISO 8601 spelling (PT60M is PT1H), KQL and text with any line endings and
    trailing blanks, tactics and techniques in any order, entity mappings in any order, read-only
    fields, nulls, empty lists and server defaults dropped.
    """
    result: dict[str, Any] = {}
    for key, value in properties.items():
        if key in _READ_ONLY or _is_empty(value) or _SERVER_DEFAULTS.get(key) == value:
            continue
        result[key] = _normal_value(key, value)
    return result


def _normal_value(key: str, value: Any) -> Any:
    if key in _DURATIONS and isinstance(value, str):
        return _duration(value)
    if key in ("query", "description", "displayName") and isinstance(value, str):
        return _text(value)
    if key in _SORTED_LISTS and isinstance(value, list):
        return sorted(value)
    if key == "entityMappings" and isinstance(value, list):
        return sorted((_entity(m) for m in value), key=lambda m: json.dumps(m, sort_keys=True))
    if key == "incidentConfiguration" and isinstance(value, Mapping):
        return _incident(value)
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if not _is_empty(v)}
    return value


def _incident(value: Mapping[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in value.items() if not _is_empty(v)}
    grouping = result.get("groupingConfiguration")
    if isinstance(grouping, Mapping):
        grouping = {k: v for k, v in grouping.items() if not _is_empty(v)}
        if isinstance(grouping.get("lookbackDuration"), str):
            grouping["lookbackDuration"] = _duration(grouping["lookbackDuration"])
        result["groupingConfiguration"] = grouping
    return result


def _entity(mapping: Any) -> Any:
    if not isinstance(mapping, Mapping):
        return mapping
    fields = mapping.get("fieldMappings")
    if isinstance(fields, list):
        fields = sorted(fields, key=lambda f: json.dumps(f, sort_keys=True))
    return {**mapping, "fieldMappings": fields}


def _duration(text: str) -> str:
    try:
        return format_duration(parse_duration(text))
    except ValueError:
        return text


def _text(value: str) -> str:
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def _is_empty(value: Any) -> bool:
    return value is None or value in ([], {})


def _name(value: str) -> str:
    """Project and environment names as the ownership line spells them (no separators)."""
    return re.sub(r"[^\w.-]", "-", value) or "-"
