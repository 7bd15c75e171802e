"""Our typed model of the Microsoft.SecurityInsights Scheduled alert-rule body.

Written from the API description (Azure/azure-rest-api-specs, securityinsights stable 2025-12-01
and the 2025-10-01-preview), so that a clone needs no copy of it. Standard library only: the
local workspace emulator validates request bodies with this module too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

GA_API_VERSION = "2025-12-01"

ATTACK_TACTICS = (
    "Reconnaissance",
    "ResourceDevelopment",
    "InitialAccess",
    "Execution",
    "Persistence",
    "PrivilegeEscalation",
    "DefenseEvasion",
    "CredentialAccess",
    "Discovery",
    "LateralMovement",
    "Collection",
    "Exfiltration",
    "CommandAndControl",
    "Impact",
    "PreAttack",
    "ImpairProcessControl",
    "InhibitResponseFunction",
)
SEVERITIES = ("High", "Medium", "Low", "Informational")
TRIGGER_OPERATORS = ("GreaterThan", "LessThan", "Equal", "NotEqual")
MATCHING_METHODS = ("AllEntities", "AnyAlert", "Selected")
EVENT_GROUPING_KINDS = ("SingleAlert", "AlertPerResult")
ENTITY_TYPES = (
    "Account",
    "Host",
    "IP",
    "Malware",
    "File",
    "Process",
    "CloudApplication",
    "DNS",
    "AzureResource",
    "FileHash",
    "RegistryKey",
    "RegistryValue",
    "SecurityGroup",
    "URL",
    "Mailbox",
    "MailCluster",
    "MailMessage",
    "SubmissionMail",
)
ALERT_PROPERTIES = (
    "AlertLink",
    "ConfidenceLevel",
    "ConfidenceScore",
    "ExtendedLinks",
    "ProductName",
    "ProviderName",
    "ProductComponentName",
    "RemediationSteps",
    "Techniques",
)


@dataclass(frozen=True)
class ApiVersion:
    """What one api-version of alertRules can carry."""

    name: str
    sub_techniques: bool
    sentinel_entities_mappings: bool


# Only versions whose description we have read. 2021-10-01 (SDK 1.0.0) has no `techniques`, so it
# cannot carry what Sigma rules say and is left out on purpose.
API_VERSIONS: Mapping[str, ApiVersion] = {
    "2025-12-01": ApiVersion("2025-12-01", sub_techniques=False, sentinel_entities_mappings=False),
    "2025-10-01-preview": ApiVersion(
        "2025-10-01-preview", sub_techniques=True, sentinel_entities_mappings=True
    ),
}

# All patterns are used with fullmatch and ASCII digits only: "$" alone would accept a trailing
# newline, and \d would accept other scripts' digits, both of which the service refuses.
_DURATION = re.compile(
    r"P(?!$)(?:(?P<d>\d+)D)?(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?",
    re.ASCII,
)
TECHNIQUE = re.compile(r"T\d{4}", re.ASCII)
SUB_TECHNIQUE = re.compile(r"T\d{4}\.\d{3}", re.ASCII)
CUSTOM_DETAIL_KEY = re.compile(r"[a-zA-Z]\w{0,19}", re.ASCII)
MIN_SCHEDULE = timedelta(minutes=5)
MAX_SCHEDULE = timedelta(days=14)


def parse_duration(text: str) -> timedelta:
    """Parse the ISO 8601 durations the API uses (days, hours, minutes, seconds)."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"'{text}' is not an ISO 8601 duration such as PT5M, PT1H or P1D")
    parts = {key: int(value) if value else 0 for key, value in match.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def format_duration(value: timedelta) -> str:
    """The shortest ISO 8601 form of a duration: PT5M, PT1H, P1D, P1DT12H."""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    text = "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return text if text != "P" else "PT0S"


# A property's shape: a type name, a tuple of allowed strings (an enum), or a nested spec.
# ("array", item) for lists; ("map", value) for string-keyed objects.
Spec = Any

_FIELD_MAPPING: dict[str, Spec] = {"identifier": "string", "columnName": "string"}
_ENTITY_MAPPING: dict[str, Spec] = {
    "entityType": ENTITY_TYPES,
    "fieldMappings": ("array", _FIELD_MAPPING),
}
_GROUPING: dict[str, Spec] = {
    "enabled": "bool",
    "reopenClosedIncident": "bool",
    "lookbackDuration": "duration",
    "matchingMethod": MATCHING_METHODS,
    "groupByEntities": ("array", ENTITY_TYPES),
    "groupByAlertDetails": ("array", ("DisplayName", "Severity")),
    "groupByCustomDetails": ("array", "string"),
}
_INCIDENT: dict[str, Spec] = {"createIncident": "bool", "groupingConfiguration": _GROUPING}
_OVERRIDE: dict[str, Spec] = {
    "alertDisplayNameFormat": "string",
    "alertDescriptionFormat": "string",
    "alertTacticsColumnName": "string",
    "alertSeverityColumnName": "string",
    "alertDynamicProperties": ("array", {"alertProperty": ALERT_PROPERTIES, "value": "string"}),
}
_REQUIRED: Mapping[int, tuple[str, ...]] = {
    id(_INCIDENT): ("createIncident",),
    id(_GROUPING): ("enabled", "reopenClosedIncident", "lookbackDuration", "matchingMethod"),
}

REQUIRED_PROPERTIES = (
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
)
READ_ONLY_PROPERTIES = ("lastModifiedUtc",)


def scheduled_properties(api: ApiVersion) -> dict[str, Spec]:
    """The writable `properties` of a Scheduled rule in one api-version."""
    spec: dict[str, Spec] = {
        "alertRuleTemplateName": "string",
        "templateVersion": "string",
        "description": "string",
        "displayName": "string",
        "enabled": "bool",
        "suppressionDuration": "duration",
        "suppressionEnabled": "bool",
        "tactics": ("array", ATTACK_TACTICS),
        "techniques": ("array", "string"),
        "incidentConfiguration": _INCIDENT,
        "query": "string",
        "queryFrequency": "duration",
        "queryPeriod": "duration",
        "severity": SEVERITIES,
        "triggerOperator": TRIGGER_OPERATORS,
        "triggerThreshold": "int",
        "eventGroupingSettings": {"aggregationKind": EVENT_GROUPING_KINDS},
        "customDetails": ("map", "string"),
        "entityMappings": ("array", _ENTITY_MAPPING),
        "alertDetailsOverride": _OVERRIDE,
    }
    if api.sub_techniques:
        spec["subTechniques"] = ("array", "string")
    if api.sentinel_entities_mappings:
        spec["sentinelEntitiesMappings"] = ("array", {"columnName": "string"})
    return spec


def scheduled_rule_problems(body: Mapping[str, Any], api_version: str) -> list[str]:
    """Every way `body` (a PUT body: kind, etag, properties) breaks the model; [] when valid.

    Each problem names the JSON path, e.g. `properties.tactics[0]: 'Foo' is not one of ...`.
    """
    api = API_VERSIONS.get(api_version)
    if api is None:
        return [f"api-version '{api_version}' is not supported; use one of {sorted(API_VERSIONS)}"]
    problems: list[str] = []
    if body.get("kind") != "Scheduled":
        problems.append(f"kind: expected 'Scheduled', got {body.get('kind')!r}")
    for key in body:
        if key not in ("kind", "etag", "properties"):
            problems.append(f"{key}: not a writable member of an alert rule body")
    properties = body.get("properties")
    if not isinstance(properties, Mapping):
        return [*problems, "properties: missing or not an object"]
    for name in REQUIRED_PROPERTIES:
        if name not in properties:
            problems.append(f"properties.{name}: required")
    for name in READ_ONLY_PROPERTIES:
        if name in properties:
            problems.append(f"properties.{name}: read-only, must not be sent")
    spec = scheduled_properties(api)
    for name, value in properties.items():
        if name in READ_ONLY_PROPERTIES:
            continue
        if name not in spec:
            problems.append(f"properties.{name}: not a property of a Scheduled rule in {api.name}")
            continue
        problems.extend(_check(value, spec[name], f"properties.{name}"))
    problems.extend(_service_rules(properties))
    return problems


def _check(value: Any, spec: Spec, path: str) -> list[str]:
    if isinstance(spec, tuple) and spec and spec[0] in ("array", "map") and len(spec) == 2:
        return _check_container(value, spec, path)
    if isinstance(spec, tuple):
        if value not in spec:
            return [f"{path}: {value!r} is not one of {', '.join(spec)}"]
        return []
    if isinstance(spec, dict):
        return _check_object(value, spec, path)
    return _check_scalar(value, spec, path)


def _check_container(value: Any, spec: tuple[str, Spec], path: str) -> list[str]:
    kind, item = spec
    if kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        return [p for i, v in enumerate(value) for p in _check(v, item, f"{path}[{i}]")]
    if not isinstance(value, Mapping):
        return [f"{path}: expected an object"]
    return [p for k, v in value.items() for p in _check(v, item, f"{path}.{k}")]


def _check_object(value: Any, spec: dict[str, Spec], path: str) -> list[str]:
    if not isinstance(value, Mapping):
        return [f"{path}: expected an object"]
    problems = [f"{path}.{k}: required" for k in _REQUIRED.get(id(spec), ()) if k not in value]
    for key, item in value.items():
        if key not in spec:
            problems.append(f"{path}.{key}: not a known property")
        else:
            problems.extend(_check(item, spec[key], f"{path}.{key}"))
    return problems


def _check_scalar(value: Any, kind: str, path: str) -> list[str]:
    if kind == "bool" and not isinstance(value, bool):
        return [f"{path}: expected true or false"]
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return [f"{path}: expected an integer"]
    if kind in ("string", "duration") and not isinstance(value, str):
        return [f"{path}: expected a string"]
    if kind == "duration":
        try:
            parse_duration(value)
        except ValueError as error:
            return [f"{path}: {error}"]
    return []


def _service_rules(properties: Mapping[str, Any]) -> list[str]:
    """Limits the service enforces beyond the description's types.

    Sources: Microsoft Learn "Microsoft Sentinel service limits" and "Scheduled analytics rules
    overview", and the Azure/Azure-Sentinel template validators (ScheduledTemplateInternalModel);
    the technique format from the service's own error ("The expected format is 'T####'").
    """
    problems: list[str] = []
    for name, limit in (("displayName", 256), ("description", 5000), ("query", 10000)):
        value = properties.get(name)
        if isinstance(value, str) and len(value) > limit:
            problems.append(
                f"properties.{name}: {len(value):,} characters, the service allows {limit:,}"
            )
    problems.extend(_query_rules(properties.get("query")))
    problems.extend(_schedule_rules(properties))
    problems.extend(_pattern_rules(properties.get("techniques"), TECHNIQUE, "techniques", "T####"))
    problems.extend(
        _pattern_rules(properties.get("subTechniques"), SUB_TECHNIQUE, "subTechniques", "T####.###")
    )
    problems.extend(_mapping_rules(properties))
    return problems


def _query_rules(query: Any) -> list[str]:
    if not isinstance(query, str):
        return []
    if not query.strip():
        return ["properties.query: empty"]
    return [
        f"properties.query: contains '{forbidden}', which the service refuses in analytics rules"
        for forbidden in ("search *", "union *")
        if forbidden in query
    ]


def _durations(properties: Mapping[str, Any], *names: str) -> dict[str, timedelta]:
    found: dict[str, timedelta] = {}
    for name in names:
        value = properties.get(name)
        if isinstance(value, str):
            try:
                found[name] = parse_duration(value)
            except ValueError:
                continue
    return found


def _schedule_rules(properties: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    times = _durations(properties, "queryFrequency", "queryPeriod", "suppressionDuration")
    for name in ("queryFrequency", "queryPeriod"):
        if name in times and not MIN_SCHEDULE <= times[name] <= MAX_SCHEDULE:
            problems.append(f"properties.{name}: must be between PT5M and P14D")
    frequency, period = times.get("queryFrequency"), times.get("queryPeriod")
    if frequency and period and frequency > period:
        problems.append("properties.queryFrequency: must not be longer than queryPeriod")
    if frequency and period and period >= timedelta(days=2) and frequency < timedelta(hours=1):
        problems.append(
            "properties.queryFrequency: must be at least PT1H when queryPeriod is P2D or longer"
        )
    if times.get("suppressionDuration", timedelta()) > timedelta(hours=24):
        problems.append("properties.suppressionDuration: must be at most PT24H")
    threshold = properties.get("triggerThreshold")
    if isinstance(threshold, int) and not 0 <= threshold <= 10000:
        problems.append("properties.triggerThreshold: must be between 0 and 10000")
    incident = properties.get("incidentConfiguration")
    grouping = incident.get("groupingConfiguration") if isinstance(incident, Mapping) else None
    lookback = _durations(grouping, "lookbackDuration") if isinstance(grouping, Mapping) else {}
    if "lookbackDuration" in lookback and not (
        MIN_SCHEDULE <= lookback["lookbackDuration"] <= timedelta(days=7)
    ):
        problems.append(
            "properties.incidentConfiguration.groupingConfiguration.lookbackDuration: "
            "must be between PT5M and P7D"
        )
    return problems


def _pattern_rules(values: Any, pattern: re.Pattern[str], name: str, form: str) -> list[str]:
    if not isinstance(values, list):
        return []
    return [
        f"properties.{name}[{i}]: {value!r} is not of the form {form}"
        for i, value in enumerate(values)
        if not (isinstance(value, str) and pattern.fullmatch(value))
    ]


def _mapping_rules(properties: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    mappings = properties.get("entityMappings")
    if isinstance(mappings, list):
        if len(mappings) > 10:
            problems.append(f"properties.entityMappings: {len(mappings)} entities, at most 10")
        for i, mapping in enumerate(mappings):
            fields = mapping.get("fieldMappings") if isinstance(mapping, Mapping) else None
            if isinstance(fields, list) and not 1 <= len(fields) <= 3:
                problems.append(
                    f"properties.entityMappings[{i}].fieldMappings: {len(fields)} identifiers, "
                    "each entity takes 1 to 3"
                )
    details = properties.get("customDetails")
    if isinstance(details, Mapping):
        if len(details) > 20:
            problems.append(f"properties.customDetails: {len(details)} keys, at most 20")
        for key in details:
            if not CUSTOM_DETAIL_KEY.fullmatch(str(key)):
                problems.append(
                    f"properties.customDetails.{key}: keys are 1 to 20 letters, digits or _, "
                    "starting with a letter"
                )
    return problems
