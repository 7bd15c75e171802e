"""What one rule file's build came to, as plain data: what a worker sends back, what the cache
keeps.

A `RuleOutcome` holds no pySigma objects, so it pickles from a worker process and round-trips
through JSON (the build cache); `BuildSettings` is what a worker needs besides the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.analytics import RuleInputs
from deployer.config import ProjectConfig
from deployer.fingerprint import Owner
from deployer.model import Location, Problem, RuleResult
from deployer.sources import IdentifiedRule, RuleIdentity

SKIPPED_STATUSES = ("deprecated", "unsupported")


@dataclass(frozen=True)
class BuildSettings:
    """Everything besides the rule file that decides its outcome; picklable, and hashed."""

    config: ProjectConfig
    api_version: str
    inputs: RuleInputs
    owner: Owner
    pipeline: str | None = None
    environment: str | None = None

    def digest(self) -> str:
        """A hash of these settings (dataclass reprs are stable for equal values)."""
        return hashlib.sha256(repr(self).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class BuiltRule:
    """A rule that came through every per-rule step; whole-set checks may still fail it."""

    display_name: str
    # The query as converted (what Kusto.Language checks) and as a deploy sends it.
    query: str
    sent_query: str
    pipeline: str
    table: str | None
    text: str
    body: Mapping[str, Any]
    problems: tuple[Problem, ...]
    # Line of the rule's `detection:`, where query problems point.
    detection_line: int | None = None
    # True once Kusto.Language's findings are among `problems`.
    kql_checked: bool = False


@dataclass(frozen=True)
class RuleOutcome:
    """What one rule file came to: a final result (failed, skipped), or a built rule."""

    path: Path
    identity: RuleIdentity | None
    result: RuleResult | None = None
    built: BuiltRule | None = None


def skip_reason(
    source: IdentifiedRule, status: str | None, settings: BuildSettings
) -> Problem | None:
    """Why a rule is not built here: its Sigma status, or the environment's include and
    exclude."""
    reason = None
    if status in SKIPPED_STATUSES:
        reason = f"skipped: the rule's status is {status}"
    elif settings.environment is not None:
        environment = settings.environment
        env = settings.config.environments[environment]
        if env.include and source.rule_id not in env.include:
            reason = f"skipped: not in environments.{environment}.include"
        elif source.rule_id in env.exclude:
            reason = f"skipped: in environments.{environment}.exclude"
    if reason is None:
        return None
    return Problem(
        "warning", "skipped", reason, source.location("status"), source.rule_id, source.title
    )


# --- the JSON form kept in the build cache ------------------------------------------------


def outcome_to_json(outcome: RuleOutcome) -> dict[str, Any]:
    who = outcome.identity
    built = outcome.built
    result = outcome.result
    return {
        "path": str(outcome.path),
        "identity": None if who is None else [who.rule_id, who.title, who.id_line],
        "result": None if result is None else _result_to_json(result),
        "built": None
        if built is None
        else {
            "display_name": built.display_name,
            "query": built.query,
            "sent_query": built.sent_query,
            "pipeline": built.pipeline,
            "table": built.table,
            "text": built.text,
            "body": built.body,
            "problems": [_problem_to_json(p) for p in built.problems],
            "detection_line": built.detection_line,
            "kql_checked": built.kql_checked,
        },
    }


def outcome_from_json(data: Mapping[str, Any]) -> RuleOutcome:
    """The outcome back; KeyError, TypeError or ValueError when `data` is not one."""
    path = Path(data["path"])
    who = data["identity"]
    result = data["result"]
    built = data["built"]
    return RuleOutcome(
        path,
        None if who is None else RuleIdentity(path, str(who[0]), str(who[1]), _line(who[2])),
        None if result is None else _result_from_json(result, path),
        None
        if built is None
        else BuiltRule(
            display_name=str(built["display_name"]),
            query=str(built["query"]),
            sent_query=str(built["sent_query"]),
            pipeline=str(built["pipeline"]),
            table=None if built["table"] is None else str(built["table"]),
            text=str(built["text"]),
            body=dict(built["body"]),
            problems=tuple(_problem_from_json(p, path) for p in built["problems"]),
            detection_line=_line(built["detection_line"]),
            kql_checked=bool(built["kql_checked"]),
        ),
    )


def _result_to_json(result: RuleResult) -> dict[str, Any]:
    return {
        "path": str(result.path),
        "status": result.status,
        "rule_id": result.rule_id,
        "title": result.title,
        "query": result.query,
        "problems": [_problem_to_json(p) for p in result.problems],
    }


def _result_from_json(data: Mapping[str, Any], path: Path) -> RuleResult:
    status = data["status"]
    if status not in ("failed", "skipped"):
        raise ValueError(f"a cached result is {status!r}, not failed or skipped")
    return RuleResult(
        _same_path(data["path"], path),
        status,
        _optional_text(data["rule_id"]),
        _optional_text(data["title"]),
        _optional_text(data["query"]),
        None,
        tuple(_problem_from_json(p, path) for p in data["problems"]),
    )


def _problem_to_json(problem: Problem) -> list[Any]:
    where = problem.location
    return [
        problem.severity,
        problem.code,
        problem.message,
        str(where.path),
        where.line,
        problem.rule_id,
        problem.title,
    ]


def _problem_from_json(item: Sequence[Any], path: Path) -> Problem:
    severity, code, message, where, line, rule_id, title = item
    if severity not in ("error", "warning"):
        raise ValueError(f"a cached problem has severity {severity!r}")
    return Problem(
        severity,
        str(code),
        str(message),
        Location(_same_path(where, path), _line(line)),
        _optional_text(rule_id),
        _optional_text(title),
    )


def _same_path(text: str, path: Path) -> Path:
    """The rule file's own Path where `text` names it (nearly always), so it is made once."""
    return path if text == str(path) else Path(text)


def _line(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)
