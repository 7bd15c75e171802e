"""Checks before anything is written or deployed, collected per rule and reported together.

The rendered request body against our model of the API and the service's limits (alertrule.py),
duplicate display names, technique-to-tactic coverage, entity columns, known defects of the
kusto backend, and the KQL itself with Microsoft's Kusto.Language (kql.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from deployer.alertrule import scheduled_rule_problems
from deployer.attack import techniques_table
from deployer.errors import KqlServiceError, KqlUnavailableError
from deployer.kql import KqlDiagnostic, LazyKqlService, kusto_type
from deployer.model import AnalyticsRule, Location, Problem

# Which top-level key of the Sigma file a body property comes from, to point at its line.
_PROPERTY_KEYS: Mapping[str, str] = {
    "displayName": "title",
    "description": "description",
    "query": "detection",
    "tactics": "tags",
    "techniques": "tags",
    "subTechniques": "tags",
}
# What to do about a property that breaks a limit, by property.
_ADVICE: Mapping[str, str] = {
    "query": "shorten the detection or split the rule",
    "displayName": "shorten the title",
    "description": "shorten the description or its references",
}
_KEYWORD_WHERE = re.compile(r"\|\s*where\s+@?\"")


class KqlChecker(Protocol):
    """What validation needs of the Kusto.Language service (kql.KqlLanguageService)."""

    def define_schema(self, name: str, tables: Mapping[str, Mapping[str, str]]) -> None: ...

    def check(self, query: str, *, schema: str) -> tuple[KqlDiagnostic, ...]: ...


@dataclass
class QueryValidator:
    """Checks queries against the schema of the pipeline that produced them.

    `schema_tables` gives table -> column -> the backend's type name; schemas are sent to the
    language service once per pipeline, on first use, in Kusto's own type names.
    """

    service: KqlChecker
    schema_tables: Callable[[str], Mapping[str, Mapping[str, str]]]
    _defined: set[str] = field(default_factory=set)
    # The same query of the same pipeline gets the same answer: several environments built in
    # one run (plan --all-envs) check each query once.
    _seen: dict[tuple[str, str], tuple[KqlDiagnostic, ...]] = field(default_factory=dict)

    def start(self) -> None:
        """Begin starting the language service, when it starts lazily; queries are coming."""
        if isinstance(self.service, LazyKqlService):
            self.service.start()

    def diagnostics(self, query: str, pipeline: str) -> tuple[KqlDiagnostic, ...]:
        known = self._seen.get((pipeline, query))
        if known is not None:
            return known
        if pipeline not in self._defined:
            tables = {
                table: {column: kusto_type(kind) for column, kind in columns.items()}
                for table, columns in self.schema_tables(pipeline).items()
            }
            self.service.define_schema(pipeline, tables)
            self._defined.add(pipeline)
        found = self.service.check(query, schema=pipeline)
        self._seen[(pipeline, query)] = found
        return found

    def schema_free_diagnostics(self, query: str) -> tuple[KqlDiagnostic, ...]:
        """Diagnostics against a schema with no tables (for queries written by hand)."""
        if NATIVE_SCHEMA not in self._defined:
            self.service.define_schema(NATIVE_SCHEMA, {})
            self._defined.add(NATIVE_SCHEMA)
        return self.service.check(query, schema=NATIVE_SCHEMA)


def validate_rule(
    rule: AnalyticsRule,
    body: Mapping[str, Any],
    *,
    api_version: str,
    lines: Mapping[str, int],
    queries: QueryValidator | None,
    table_columns: Collection[str] = (),
) -> list[Problem]:
    """Every problem with one rule's desired state and the body a deploy would send."""
    problems: list[Problem] = []

    def report(code: str, message: str, key: str | None, severity: str = "error") -> None:
        line = lines.get(key) if key else None
        problems.append(
            Problem(
                "error" if severity == "error" else "warning",
                code,
                message,
                Location(rule.source.path, line),
                rule.rule_id,
                rule.display_name,
            )
        )

    # The body as the API and the service's documented limits see it.
    for message in scheduled_rule_problems(body, api_version):
        name = message.split(":", 1)[0].removeprefix("properties.").split(".")[0].split("[")[0]
        advice = _ADVICE.get(name)
        text = f"{message}; {advice}" if advice and "characters" in message else message
        report("limit", text, _PROPERTY_KEYS.get(name))

    # ATT&CK: every technique's tactic is among the rule's tactics.
    known = techniques_table()
    for technique in rule.techniques:
        tactics = known[technique].tactics if technique in known else ()
        if tactics and not set(tactics) & set(rule.tactics):
            report(
                "attack",
                f"technique {technique} belongs to {', '.join(tactics)}, none of which the rule "
                "lists; add the tactic's tag",
                "tags",
            )

    # Entity columns must exist in the table the query returns.
    if table_columns:
        for mapping in rule.entity_mappings:
            for identifier, column in mapping.field_mappings:
                if column not in table_columns:
                    report(
                        "entities",
                        f"entity {mapping.entity_type}.{identifier} maps column '{column}', "
                        f"which {rule.table} does not have",
                        "sentinel",
                    )

    for message in known_defects(rule.query):
        report("defect", message, "detection")

    if queries is not None:
        where = Location(rule.source.path, lines.get("detection"))
        problems += query_problems(
            rule.query,
            rule.pipeline,
            queries,
            where=where,
            rule_id=rule.rule_id,
            title=rule.display_name,
        )
    return problems


def query_problems(
    query: str,
    pipeline: str,
    queries: QueryValidator,
    *,
    where: Location,
    rule_id: str,
    title: str,
) -> list[Problem]:
    """Kusto.Language's errors in the rule's query, against its pipeline's schema.

    The last check of `validate_rule`, also run on its own: the build checks queries in the
    main process while worker processes convert the next rules.
    """
    try:
        diagnostics = queries.diagnostics(query, pipeline)
    except KqlUnavailableError:
        raise
    except KqlServiceError as error:
        # One query that Kusto.Language cannot analyse (its stack overflows on very deep
        # queries) fails that rule, not the run.
        message = f"Kusto.Language could not check the query: {error}"
        return [Problem("error", "kql", message, where, rule_id, title)]
    return [
        Problem(
            "error",
            "kql",
            f"KQL {diagnostic.code} at query line {diagnostic.line}, column "
            f"{diagnostic.column}: {diagnostic.message} ({pipeline} schema)",
            where,
            rule_id,
            title,
        )
        for diagnostic in diagnostics
    ]


# Kusto.Language codes for names it cannot resolve without the workspace's schema: tables
# (KS204) and functions (KS211, such as ASIM parsers and workspace functions).
_UNRESOLVED_NAMES = frozenset({"KS204", "KS211"})
NATIVE_SCHEMA = "native"


def validate_native(
    body: Mapping[str, Any],
    *,
    api_version: str,
    where: Location,
    rule_id: str,
    title: str,
    queries: QueryValidator | None,
) -> list[Problem]:
    """A native rule's body against the API model, and its KQL with Kusto.Language.

    NOTE: a native rule's query may use any table or function of the workspace, whose schema
    the tool does not know, so unresolved names are not errors and columns are not checked;
    syntax and everything built into Kusto is.
    """
    problems = [
        Problem("error", "limit", message, where, rule_id, title)
        for message in scheduled_rule_problems(body, api_version)
    ]
    query = body.get("properties", {}).get("query")
    if queries is None or not isinstance(query, str):
        return problems
    try:
        diagnostics = queries.schema_free_diagnostics(query)
    except KqlServiceError as error:
        message = f"Kusto.Language could not check the query: {error}"
        return [*problems, Problem("error", "kql", message, where, rule_id, title)]
    problems += [
        Problem(
            "error",
            "kql",
            f"KQL {d.code} at query line {d.line}, column {d.column}: {d.message}",
            where,
            rule_id,
            title,
        )
        for d in diagnostics
        if d.code not in _UNRESOLVED_NAMES
    ]
    return problems


def known_defects(query: str) -> list[str]:
    """Queries the kusto backend emits that can never match as the Sigma rule means.

    NOTE: our pipeline items (pipelines/items.py) refuse keyword detections at conversion; this
    check stays for queries converted otherwise. Literal `*`, lost backslashes, `isnull()` on
    strings and numbers compared with text are prevented there and asserted over the SigmaHQ
    corpus by tests/test_corpus.py; invalid escapes are also caught by Kusto.Language (KS001).
    """
    if _KEYWORD_WHERE.search(query):
        return [
            "the rule has keyword (field-less) detections, which the kusto backend turns into "
            '`where "..."`, not a KQL filter; match a field instead (e.g. CommandLine|contains)'
        ]
    return []


class NamedRule(Protocol):
    """What the display-name check needs of a rule, Sigma-built or native."""

    @property
    def rule_id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def source(self) -> Location: ...


def duplicate_display_names(rules: Sequence[NamedRule]) -> list[Problem]:
    """Sentinel requires unique display names within a workspace."""
    counts = Counter(rule.display_name.casefold() for rule in rules)
    return [
        Problem(
            "error",
            "duplicate-name",
            f"display name '{rule.display_name}' is used by {counts[key] - 1} other rule(s); "
            "the workspace needs unique names: change the title",
            rule.source,
            rule.rule_id,
            rule.display_name,
        )
        for rule in rules
        if counts[key := rule.display_name.casefold()] > 1
    ]
