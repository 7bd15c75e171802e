"""Native rules: Scheduled analytics rules already written as ARM templates, and their export.

A file `rules/**/NAME.arm.json` holds one rule in the format `build` writes and the Sentinel
portal exports: an ARM template with one `Microsoft.OperationalInsights/workspaces/providers/
alertRules` resource. Its KQL is taken as written. `export` writes a workspace's Scheduled
rules in this format, so adopting a workspace is export, commit, plan.

A rule's name goes into an ARM expression (the resource name), so only names made of letters,
digits, `-`, `_` and `.` are accepted, on the way in and on the way out: rule text never
becomes template code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.alertrule import READ_ONLY_PROPERTIES
from deployer.fingerprint import without_marker
from deployer.model import Location, Problem
from deployer.render import arm_escape, arm_unescape, is_arm_expression
from deployer.sources import NATIVE_SUFFIX

RESOURCE_TYPE = "Microsoft.OperationalInsights/workspaces/providers/alertRules"
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_NAME_EXPRESSION = re.compile(
    r"\[concat\(parameters\('workspace'\),\s*'/Microsoft\.SecurityInsights/"
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})'\)\]"
)


@dataclass(frozen=True)
class NativeSource:
    """A native rule file that holds one usable Scheduled rule."""

    path: Path
    rule_id: str
    title: str
    # The template as read; `body` is what a deploy sends (ARM escaping undone).
    document: Mapping[str, Any]
    body: Mapping[str, Any]

    def location(self, key: str | None = None) -> Location:
        return Location(self.path)


def is_native(path: Path) -> bool:
    return path.name.lower().endswith(NATIVE_SUFFIX)


def load_native(path: Path) -> NativeSource | tuple[Problem, ...]:
    """Read one native rule file; every problem with it, or the rule."""
    where = Location(path)

    def problem(message: str, rule_id: str | None = None, title: str | None = None) -> Problem:
        return Problem("error", "native", message, where, rule_id, title)

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        return (problem(f"cannot read the file: {error}"),)
    except json.JSONDecodeError as error:
        return (
            problem(f"not JSON (line {error.lineno}, column {error.colno}: {error.msg}); fix it"),
        )
    resources = document.get("resources") if isinstance(document, dict) else None
    if not isinstance(resources, list) or len(resources) != 1:
        count = len(resources) if isinstance(resources, list) else 0
        return (
            problem(
                f"an ARM template with exactly one alert-rule resource is expected, this one has "
                f"{count}; keep one rule per file"
            ),
        )
    resource = resources[0]
    if not isinstance(resource, dict):
        return (problem("resources[0] is not an object"),)
    name = _NAME_EXPRESSION.fullmatch(str(resource.get("name", "")))
    properties = resource.get("properties")
    title = str(properties.get("displayName")) if isinstance(properties, dict) else None
    rule_id = name["name"] if name else None
    problems = []
    if name is None:
        problems.append(
            problem(
                "resources[0].name must be \"[concat(parameters('workspace'),"
                "'/Microsoft.SecurityInsights/<rule name>')]\" with a name of letters, digits, "
                "'-', '_' or '.'",
                title=title,
            )
        )
    if resource.get("type") != RESOURCE_TYPE:
        problems.append(problem(f"resources[0].type must be {RESOURCE_TYPE}", rule_id, title))
    if resource.get("kind") != "Scheduled":
        problems.append(
            problem(
                f"resources[0].kind is {resource.get('kind')!r}; only Scheduled rules are deployed",
                rule_id,
                title,
            )
        )
    if not isinstance(properties, dict):
        problems.append(problem("resources[0].properties must be an object", rule_id, title))
    else:
        problems += [
            problem(
                f"properties.{path} is an ARM expression, which would be evaluated at deploy "
                "time; write the literal value (a literal starting with '[' is written '[[')",
                rule_id,
                title,
            )
            for path in _expressions(properties)
        ]
    if problems or rule_id is None or not isinstance(properties, dict):
        return tuple(problems)
    body = {"kind": "Scheduled", "properties": arm_unescape(properties)}
    return NativeSource(path, rule_id, title or rule_id, document, body)


def export_template(rule: Mapping[str, Any], api_version: str) -> dict[str, Any] | str:
    """A workspace rule as a native rule file's template, or why it cannot be one."""
    name = str(rule.get("name", ""))
    if rule.get("kind") != "Scheduled":
        return f"kind {rule.get('kind')}: only Scheduled rules are exported"
    if not _SAFE_NAME.fullmatch(name):
        return (
            "its name has characters other than letters, digits, '-', '_' and '.', so it "
            "cannot be written into an ARM template safely"
        )
    properties = {
        key: value
        for key, value in without_marker(rule.get("properties") or {}).items()
        if key not in READ_ONLY_PROPERTIES and value is not None
    }
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {"workspace": {"type": "String"}},
        "resources": [
            {
                "id": (
                    "[concat(resourceId('Microsoft.OperationalInsights/workspaces/providers', "
                    "parameters('workspace'), 'Microsoft.SecurityInsights'),"
                    f"'/alertRules/{name}')]"
                ),
                "name": f"[concat(parameters('workspace'),'/Microsoft.SecurityInsights/{name}')]",
                "type": RESOURCE_TYPE,
                "kind": "Scheduled",
                "apiVersion": api_version,
                "properties": arm_escape(properties),
            }
        ],
    }


def export_file_name(rule: Mapping[str, Any]) -> str:
    return f"{rule.get('name')}{NATIVE_SUFFIX}"


def _expressions(value: Any, path: str = "") -> list[str]:
    """Paths of strings ARM would evaluate."""
    if isinstance(value, str):
        return [path] if is_arm_expression(value) else []
    if isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            found += _expressions(item, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(value, list):
        found = []
        for index, item in enumerate(value):
            found += _expressions(item, f"{path}[{index}]")
        return found
    return []
