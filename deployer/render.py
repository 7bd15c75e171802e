"""AnalyticsRule to ARM template, with jinja2, safely for any rule text.

Safety comes from three rules: every value is emitted as JSON by our `arm` filter (never pasted
into a JSON string), a string ARM would read as an expression (starts with "[", ends with "]")
is escaped as "[[...]" so that ARM never evaluates rule text, and undefined names stop the
render. A template that prints a value
without the filter is refused, so a custom template cannot undo the first two by accident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

from deployer.alertrule import API_VERSIONS, format_duration
from deployer.errors import TemplateError
from deployer.fingerprint import Owner, with_marker
from deployer.model import AnalyticsRule

TEMPLATE_NAME = "scheduled-rule.json.j2"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class _Json(str):
    """Text the `arm` or `arm_expression` filter produced: the only output a template may print."""

    __slots__ = ()


@dataclass(frozen=True)
class RenderedRule:
    """One rule's ARM template: the file text and what a deploy sends."""

    rule_id: str
    text: str
    document: Mapping[str, Any]

    @cached_property
    def resource(self) -> Mapping[str, Any]:
        resources = self.document.get("resources")
        if not isinstance(resources, list) or len(resources) != 1:
            raise TemplateError(f"rule {self.rule_id}: the template must hold exactly one resource")
        resource: Mapping[str, Any] = resources[0]
        return resource

    def request_body(self) -> dict[str, Any]:
        """The alert-rule PUT body: kind and the resource's properties, ARM escaping undone."""
        return {
            "kind": self.resource.get("kind"),
            "properties": arm_unescape(self.resource.get("properties", {})),
        }


def is_arm_expression(text: str) -> bool:
    """Whether ARM would evaluate this JSON string as a template expression.

    ARM's expression parser (Azure.ResourceManager.Deployments.Expression, ExpressionParser)
    treats a string as an expression when it starts with "[" and ends with "]", unless it starts
    with "[[", which makes it a literal with the first "[" removed. Microsoft Learn, "Syntax and
    expressions in ARM templates", escape characters, says the same.
    """
    return text.startswith("[") and text.endswith("]") and not text.startswith("[[")


def arm_escape(value: Any) -> Any:
    """Escape, at any depth, every string ARM would evaluate or unescape, by a leading "[".

    NOTE: only strings that start with "[" and end with "]" are escaped. ARM leaves any other
    string as it is, so escaping "[PROD] Rule" as "[[PROD] Rule" would reach the workspace with
    both brackets; escaping exactly what ARM reads as an expression keeps the text as it was.
    Source: Learn, "Syntax and expressions in ARM templates", Escape characters
    (https://learn.microsoft.com/azure/azure-resource-manager/templates/template-expressions).
    """
    if isinstance(value, str):
        return "[" + value if value.startswith("[") and value.endswith("]") else value
    if isinstance(value, Mapping):
        return {key: arm_escape(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [arm_escape(item) for item in value]
    return value


def arm_unescape(value: Any) -> Any:
    """What ARM makes of literal strings: "[[...]" loses its first "["; nothing else changes."""
    if isinstance(value, str):
        return value[1:] if value.startswith("[[") and value.endswith("]") else value
    if isinstance(value, Mapping):
        return {key: arm_unescape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [arm_unescape(item) for item in value]
    return value


class Renderer:
    """A jinja2 environment over a templates folder (ours unless the project names its own)."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        folder = templates_dir or default_templates_dir()
        if not (folder / TEMPLATE_NAME).is_file():
            raise TemplateError(f"{folder}: no {TEMPLATE_NAME} in the templates folder")
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folder),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_refuse_raw_values,
        )
        self._env.filters["arm"] = _arm_filter
        self._env.filters["arm_expression"] = _arm_expression_filter
        try:
            self._template = self._env.get_template(TEMPLATE_NAME)
        except jinja2.TemplateError as error:
            raise TemplateError(f"{folder / TEMPLATE_NAME}: {error}") from error

    def render(
        self, rule: AnalyticsRule, *, api_version: str, owner: Owner | None = None
    ) -> RenderedRule:
        """Render one rule; the text is canonical JSON, so equal rules give equal bytes.

        With an `owner`, the description ends with the ownership line (fingerprint.py), added
        after the template so that no template can leave it out or spell it differently.
        """
        if not _GUID.match(rule.rule_id):
            raise TemplateError(f"rule id {rule.rule_id!r} is not a GUID, so it cannot be a name")
        api = API_VERSIONS[api_version]
        try:
            raw = self._template.render(
                rule=template_values(rule),
                api={"version": api.name, "sub_techniques": api.sub_techniques},
                api_version=api.name,
                resource_id=_ArmExpression(
                    "[concat(resourceId('Microsoft.OperationalInsights/workspaces/providers', "
                    "parameters('workspace'), 'Microsoft.SecurityInsights'),"
                    f"'/alertRules/{rule.rule_id}')]"
                ),
                resource_name=_ArmExpression(
                    f"[concat(parameters('workspace'),'/Microsoft.SecurityInsights/{rule.rule_id}')]"
                ),
            )
        except jinja2.TemplateError as error:
            raise TemplateError(f"{TEMPLATE_NAME}: rule {rule.rule_id}: {error}") from error
        try:
            document = json.loads(raw)
        except json.JSONDecodeError as error:
            raise TemplateError(
                f"{TEMPLATE_NAME}: rule {rule.rule_id}: the template does not render to JSON "
                f"(line {error.lineno}, column {error.colno}: {error.msg})"
            ) from error
        if owner is not None:
            add_ownership(document, owner, rule.rule_id)
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        return RenderedRule(rule_id=rule.rule_id, text=text, document=document)


def add_ownership(document: dict[str, Any], owner: Owner, rule_id: str) -> None:
    """Append the ownership line to the description of a template's one resource, in place."""
    resources = document.get("resources")
    properties = resources[0].get("properties") if isinstance(resources, list) else None
    if not isinstance(properties, dict):
        raise TemplateError(f"rule {rule_id}: the template's resource has no properties")
    owned = with_marker(arm_unescape(properties), owner)
    properties["description"] = arm_escape(owned["description"])


def default_templates_dir() -> Path:
    """The templates shipped with the tool: the repository's `templates/` in a checkout, the
    copy inside the package in an installed wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "templates", package / "templates"):
        if (candidate / TEMPLATE_NAME).is_file():
            return candidate
    raise TemplateError(f"the tool's own {TEMPLATE_NAME} is missing; reinstall sentinel-deployer")


def template_values(rule: AnalyticsRule) -> dict[str, Any]:
    """The values a template sees as `rule`, already in the API's shapes and spellings."""
    settings = rule.settings
    return {
        "id": rule.rule_id,
        "display_name": rule.display_name,
        "description": rule.description,
        "severity": rule.severity.value,
        "enabled": settings.enabled,
        "query": rule.query,
        "query_frequency": format_duration(settings.query_frequency),
        "query_period": format_duration(settings.query_period),
        "trigger_operator": settings.trigger_operator,
        "trigger_threshold": settings.trigger_threshold,
        "suppression_duration": format_duration(settings.suppression_duration),
        "suppression_enabled": settings.suppression_enabled,
        "tactics": list(rule.tactics),
        "techniques": list(rule.techniques),
        "sub_techniques": list(rule.sub_techniques),
        "entity_mappings": [
            {
                "entityType": mapping.entity_type,
                "fieldMappings": [
                    {"identifier": identifier, "columnName": column}
                    for identifier, column in mapping.field_mappings
                ],
            }
            for mapping in rule.entity_mappings
        ],
        "custom_details": dict(settings.custom_details),
        "create_incident": settings.create_incident,
        "grouping_enabled": settings.grouping_enabled,
        "grouping_reopen_closed_incident": settings.grouping_reopen_closed_incident,
        "grouping_lookback": format_duration(settings.grouping_lookback),
        "grouping_matching_method": settings.grouping_matching_method,
        "event_grouping": settings.event_grouping,
    }


class _ArmExpression(str):
    """An ARM expression this module built from checked parts (never from rule text)."""

    __slots__ = ()


def _arm_filter(value: Any) -> _Json:
    if isinstance(value, jinja2.Undefined):
        # StrictUndefined raises its own "is undefined" error (naming the variable) when used.
        str(value)
    return _Json(json.dumps(arm_escape(value), ensure_ascii=False))


def _arm_expression_filter(value: Any) -> _Json:
    if not isinstance(value, _ArmExpression):
        raise TemplateError(
            "arm_expression only takes the expressions the tool provides (resource_id, "
            "resource_name); use `arm` for every other value"
        )
    return _Json(json.dumps(str(value)))


def _refuse_raw_values(value: Any) -> Any:
    if isinstance(value, _Json):
        return value
    raise TemplateError(
        f"the template prints a value without the `arm` filter ({str(value)[:40]!r}); write "
        "{{ value | arm }} so that it is emitted as escaped JSON"
    )
