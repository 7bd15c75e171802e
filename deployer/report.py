"""Results as text and JSON, and the one summary line every command ends with."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from deployer.model import Problem, RuleResult

# Status words in the order the summary lists them.
_STATUS_ORDER = ("built", "valid", "skipped", "failed")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def summary(results: Sequence[RuleResult]) -> str:
    """'3 rules: 2 built, 1 failed (2 warnings)' - zero counts are left out."""
    if not results:
        return "0 rules found"
    counts: Counter[str] = Counter(result.status for result in results)
    parts = [f"{counts[status]} {status}" for status in _STATUS_ORDER if counts[status]]
    warnings = sum(len(r.warnings) for r in results if r.status != "skipped")
    tail = f" ({plural(warnings, 'warning')})" if warnings else ""
    return f"{plural(len(results), 'rule')}: {', '.join(parts)}{tail}"


def text_lines(result: RuleResult, *, root: Path | None = None) -> Iterable[str]:
    """One line for the rule, then one per problem (already 'file:line: severity: why')."""
    name = _relative(result.path, root)
    what = f"{result.rule_id}  {result.title}" if result.rule_id else (result.title or "")
    where = f" -> {_relative(result.output, root)}" if result.output else ""
    yield f"{result.status:<8} {name}  {what}{where}".rstrip()
    for problem in result.problems:
        where = _relative(problem.location.path, root)
        if problem.location.line is not None:
            where += f":{problem.location.line}"
        title = f" [{problem.title}]" if problem.title else ""
        yield f"  {where}: {problem.severity}{title}: {problem.message}"


def json_line(result: RuleResult, *, root: Path | None = None) -> str:
    """One JSON object per rule: path, id, title, status, then query or errors."""
    record: dict[str, Any] = {
        "path": _relative(result.path, root),
        "id": result.rule_id,
        "title": result.title,
        "status": result.status,
    }
    if result.output is not None:
        record["output"] = _relative(result.output, root)
    if result.query is not None and result.status != "failed":
        record["query"] = result.query
    record["errors"] = [_problem(p) for p in result.errors]
    record["warnings"] = [_problem(p) for p in result.warnings]
    return json.dumps(record, ensure_ascii=False)


def _problem(problem: Problem) -> dict[str, Any]:
    return {
        "code": problem.code,
        "message": problem.message,
        "line": problem.location.line,
    }


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            pass
    return str(path)
