"""Frozen values passed between the pipeline stages.

load (rules.py) -> convert (convert.py) -> AnalyticsRule (analytics.py) -> render -> validate.
Nothing here knows pySigma, jinja2 or Azure; every stage takes these and returns these.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal


class Severity(enum.StrEnum):
    """The analytics rule's severity, in the service's spelling."""

    INFORMATIONAL = "Informational"
    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"


@dataclass(frozen=True)
class Location:
    """Where something came from: a rule file and, where known, a 1-based line."""

    path: Path
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else str(self.path)


@dataclass(frozen=True)
class Problem:
    """One finding about one rule: a reason and what to do, on one line."""

    severity: Literal["error", "warning"]
    code: str
    message: str
    location: Location
    rule_id: str | None = None
    title: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def line(self) -> str:
        """The one-line form the CLI prints: file[:line]: severity [rule]: message."""
        who = f" [{self.title}]" if self.title else ""
        return f"{self.location}: {self.severity}{who}: {self.message}"


@dataclass(frozen=True)
class EntityMapping:
    """One Sentinel entity and the query columns that identify it."""

    entity_type: str
    # (identifier, column) pairs, e.g. ("HostName", "DvcHostname").
    field_mappings: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RuleSettings:
    """Everything about an analytics rule that is not in the Sigma rule itself.

    Built from the project's defaults, then the rule's `sentinel:` block, then the environment's
    overrides (see config.py). Durations are timedeltas here and ISO 8601 in the template.
    """

    enabled: bool = True
    query_frequency: timedelta = timedelta(hours=1)
    query_period: timedelta = timedelta(hours=1)
    trigger_operator: str = "GreaterThan"
    trigger_threshold: int = 0
    suppression_enabled: bool = False
    suppression_duration: timedelta = timedelta(hours=5)
    create_incident: bool = True
    grouping_enabled: bool = False
    grouping_lookback: timedelta = timedelta(hours=5)
    grouping_matching_method: str = "AllEntities"
    grouping_reopen_closed_incident: bool = False
    event_grouping: str = "SingleAlert"
    display_name_prefix: str = ""
    severity: Severity | None = None
    # None: derive from the query's table (analytics.py); () : no entity mappings at all.
    entity_mappings: tuple[EntityMapping, ...] | None = None
    custom_details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RuleMetadata:
    """What a Sigma rule says about itself, as plain values (no pySigma objects)."""

    rule_id: str
    title: str
    description: str
    status: str | None
    level: str | None
    tags: tuple[str, ...]
    references: tuple[str, ...]
    falsepositives: tuple[str, ...]
    author: str | None


@dataclass(frozen=True)
class ConvertedRule:
    """A Sigma rule's query, as the kusto backend produced it for one pipeline."""

    query: str
    pipeline: str
    # The table the query reads, when the query starts with one (it always does for the backend).
    table: str | None
    # What our processing items changed that the rule's author should know, one line each
    # (an `or` alternative dropped because the table has no column for it).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnalyticsRule:
    """The desired state of one Scheduled analytics rule in a workspace."""

    rule_id: str
    display_name: str
    description: str
    severity: Severity
    query: str
    pipeline: str
    table: str | None
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]
    sub_techniques: tuple[str, ...]
    entity_mappings: tuple[EntityMapping, ...]
    settings: RuleSettings
    source: Location


@dataclass(frozen=True)
class RuleResult:
    """What happened to one rule file in a run: the line every rule gets."""

    path: Path
    status: Literal["built", "valid", "failed", "skipped"]
    rule_id: str | None = None
    title: str | None = None
    query: str | None = None
    output: Path | None = None
    problems: tuple[Problem, ...] = field(default=())
    # Where the query reads: the pipeline that converted it and the table it starts from.
    pipeline: str | None = None
    table: str | None = None
    # The alert-rule request body a deploy sends (kind and properties), when the rule built.
    body: Mapping[str, Any] | None = None

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.is_error)
