"""Sigma metadata and settings to the desired analytics rule (`AnalyticsRule`).

Severity from `level`, tactics and techniques from ATT&CK tags, the description with references
and false positives, entity mappings from the columns the query returns, and the settings
layers of config.py.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from deployer.attack import map_tags
from deployer.config import SettingsLayer, apply_settings, parse_settings
from deployer.model import (
    AnalyticsRule,
    ConvertedRule,
    EntityMapping,
    Location,
    Problem,
    RuleMetadata,
    RuleSettings,
    Severity,
)

SEVERITY_BY_LEVEL: Mapping[str, Severity] = {
    "informational": Severity.INFORMATIONAL,
    "low": Severity.LOW,
    "medium": Severity.MEDIUM,
    "high": Severity.HIGH,
    # Sentinel has no "critical"; High is the most it can say.
    "critical": Severity.HIGH,
}

# Entities whose columns are certain for a table: the backend's queries return every column of
# the table they read (`Table | where ...`), and these columns mean the same thing in every row.
# Identifiers from Microsoft Learn, "Entities in Microsoft Sentinel" (entity identifiers).
CERTAIN_ENTITIES: Mapping[str, tuple[EntityMapping, ...]] = {
    # ASIM process events (imProcessCreate): the device, the acting user, the new process.
    "imProcessCreate": (
        EntityMapping("Host", (("HostName", "DvcHostname"),)),
        EntityMapping("Account", (("FullName", "ActorUsername"),)),
        EntityMapping(
            "Process",
            (("ProcessId", "TargetProcessId"), ("CommandLine", "TargetProcessCommandLine")),
        ),
    ),
    # Defender XDR process events.
    "DeviceProcessEvents": (
        EntityMapping("Host", (("FullName", "DeviceName"),)),
        EntityMapping("Account", (("Name", "AccountName"), ("NTDomain", "AccountDomain"))),
        EntityMapping(
            "Process", (("ProcessId", "ProcessId"), ("CommandLine", "ProcessCommandLine"))
        ),
    ),
    # Windows security events (4688 process creation among them).
    "SecurityEvent": (
        EntityMapping("Host", (("FullName", "Computer"),)),
        EntityMapping("Account", (("FullName", "SubjectAccount"),)),
        EntityMapping("Process", (("ProcessId", "NewProcessId"), ("CommandLine", "CommandLine"))),
    ),
}


class _Report(Protocol):
    def __call__(self, severity: str, code: str, message: str, line: int | None = None) -> None:
        """Record one problem on the rule being built."""


# Keys of a rule's `sentinel:` block that are not rule settings.
RULE_ONLY_KEYS = ("pipeline",)


@dataclass(frozen=True)
class RuleInputs:
    """What, besides the Sigma rule, decides one analytics rule."""

    defaults: SettingsLayer = ()
    overrides: SettingsLayer = ()
    # Columns of the query's table in the pipeline's schema (entities need them to exist).
    table_columns: Collection[str] = ()


def analytics_rule(
    metadata: RuleMetadata,
    converted: ConvertedRule,
    *,
    sentinel: Mapping[str, object],
    inputs: RuleInputs,
    source: Location,
    lines: Mapping[str, int] | None = None,
) -> tuple[AnalyticsRule | None, tuple[Problem, ...]]:
    """The analytics rule for one converted Sigma rule, or None and the reasons.

    `lines` maps the rule file's top-level keys to their lines, for the messages.
    """
    problems: list[Problem] = []
    lines = lines or {}

    def report(severity: str, code: str, message: str, line: int | None = None) -> None:
        location = Location(source.path, line) if line is not None else source
        problems.append(
            Problem(
                "error" if severity == "error" else "warning",
                code,
                message,
                location,
                metadata.rule_id,
                metadata.title,
            )
        )

    # The rule's own settings, checked like the config file's.
    own = {k: v for k, v in sentinel.items() if k not in RULE_ONLY_KEYS}
    rule_layer, layer_errors = parse_settings(own, "sentinel")
    for message in layer_errors:
        report("error", "sentinel", message, lines.get("sentinel"))
    settings = apply_settings(RuleSettings(), inputs.defaults, rule_layer, inputs.overrides)

    attack = map_tags(metadata.tags)
    for message in attack.errors:
        report("error", "attack", message, lines.get("tags"))
    for message in attack.warnings:
        report("warning", "attack", message, lines.get("tags"))

    severity = settings.severity or _severity(metadata.level, report)
    entities = _entities(settings, converted, inputs.table_columns, report)
    if any(p.is_error for p in problems):
        return None, tuple(problems)
    rule = AnalyticsRule(
        rule_id=metadata.rule_id,
        display_name=settings.display_name_prefix + metadata.title,
        description=describe(metadata),
        severity=severity,
        query=converted.query,
        pipeline=converted.pipeline,
        table=converted.table,
        tactics=attack.tactics,
        techniques=attack.techniques,
        sub_techniques=attack.sub_techniques,
        entity_mappings=entities,
        settings=settings,
        source=source,
    )
    return rule, tuple(problems)


def describe(metadata: RuleMetadata) -> str:
    """The description, then false positives and references as short lists."""
    parts = [metadata.description.strip() or metadata.title]
    if metadata.falsepositives:
        parts.append("False positives:\n" + "\n".join(f"- {fp}" for fp in metadata.falsepositives))
    if metadata.references:
        parts.append("References:\n" + "\n".join(f"- {ref}" for ref in metadata.references))
    return "\n\n".join(parts)


def _severity(level: str | None, report: _Report) -> Severity:
    if level is None:
        report("warning", "level", "the rule has no `level`; it is deployed as Medium")
        return Severity.MEDIUM
    return SEVERITY_BY_LEVEL[level]


def _entities(
    settings: RuleSettings,
    converted: ConvertedRule,
    columns: Collection[str],
    report: _Report,
) -> tuple[EntityMapping, ...]:
    if settings.entity_mappings is not None:
        return settings.entity_mappings
    if not _returns_table_columns(converted.query):
        return ()
    derived = CERTAIN_ENTITIES.get(converted.table or "", ())
    kept = tuple(m for m in derived if all(col in columns for _, col in m.field_mappings))
    if len(kept) < len(derived):
        report(
            "warning",
            "entities",
            f"some entity columns are missing from {converted.table}'s schema; those entities "
            "are not mapped",
        )
    return kept


def _returns_table_columns(query: str) -> bool:
    """True when every step after the table is a `where`, so all its columns come out."""
    steps = [line.strip() for line in query.strip().splitlines()[1:]]
    return all(step.startswith("| where ") for step in steps)
