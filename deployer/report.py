"""Build and test results as text and JSON, and the summary line every command ends with."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployer.model import Problem, RuleResult

if TYPE_CHECKING:
    # Types only: the runner loads DuckDB, which build output does not need.
    from deployer.detection.runner import RuleTestResult

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
    # Warnings of rules that made it; a failed rule's warnings are in its own lines.
    warnings = sum(len(r.warnings) for r in results if r.status in ("built", "valid"))
    tail = f" ({plural(warnings, 'warning')})" if warnings else ""
    return f"{plural(len(results), 'rule')}: {', '.join(parts)}{tail}"


def text_lines(result: RuleResult, *, root: Path | None = None) -> Iterable[str]:
    """One line for the rule, then one per problem (already 'file:line: severity: why')."""
    name = relative_path(result.path, root)
    what = f"{result.rule_id}  {result.title}" if result.rule_id else (result.title or "")
    where = f" -> {relative_path(result.output, root)}" if result.output else ""
    yield f"{result.status:<8} {name}  {what}{where}".rstrip()
    for problem in result.problems:
        where = relative_path(problem.location.path, root)
        if problem.location.line is not None:
            where += f":{problem.location.line}"
        title = f" [{problem.title}]" if problem.title else ""
        yield f"  {where}: {problem.severity}{title}: {problem.message}"


def json_line(result: RuleResult, *, root: Path | None = None) -> str:
    """One JSON object per rule: path, id, title, status, then query or errors."""
    record: dict[str, Any] = {
        "path": relative_path(result.path, root),
        "id": result.rule_id,
        "title": result.title,
        "status": result.status,
    }
    if result.output is not None:
        record["output"] = relative_path(result.output, root)
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


def relative_path(path: Path, root: Path | None) -> str:
    """`path` relative to `root` where it lies inside it, as messages show files."""
    if root is not None:
        top = _resolved_folder(root)
        resolved = _resolved(path)
        if resolved == top:
            return "."
        if resolved.startswith(top.rstrip(os.sep) + os.sep):
            return resolved[len(top.rstrip(os.sep)) + 1 :]
    return str(path)


def _resolved(path: Path) -> str:
    # Folders resolved once each: a build shows thousands of files from a few folders.
    if path.is_symlink():
        return str(path.resolve())
    return os.path.join(_resolved_folder(path.parent), path.name)


@lru_cache(maxsize=256)
def _resolved_folder(folder: Path) -> str:
    return str(folder.resolve())


def detection_lines(result: RuleTestResult, *, root: Path | None = None) -> Iterable[str]:
    """One line for the rule's tests, then each failing case with its event."""
    name = relative_path(result.path, root)
    failed = [c for c in result.cases if not c.passed]
    if result.status == "untested":
        detail = "no test cases"
    elif result.errors:
        detail = "cases not run"
    elif failed:
        detail = f"{len(failed)} of {plural(len(result.cases), 'case')} failed"
    else:
        detail = plural(len(result.cases), "case")
    yield f"{result.status:<8} {name}  {result.title or ''} ({detail})"
    for error in result.errors:
        yield f"  {error}"
    for outcome in failed:
        where = relative_path(outcome.case.location.path, root)
        if outcome.case.location.line is not None:
            where += f":{outcome.case.location.line}"
        yield f"  {where}: case '{outcome.case.name}': {outcome.reason}"
        yield f"    event: {outcome.event_json()}"


def detection_summary(results: Sequence[RuleTestResult]) -> str:
    """'2 rules: 1 passed, 1 failed; 12 cases: 11 passed, 1 failed'."""
    if not results:
        return "0 rules found"
    counts: Counter[str] = Counter(result.status for result in results)
    rules = ", ".join(f"{counts[s]} {s}" for s in ("passed", "failed", "untested") if counts[s])
    cases = [c for result in results for c in result.cases]
    passed = sum(c.passed for c in cases)
    tail = f"{passed} passed, {len(cases) - passed} failed" if cases else "none run"
    return f"{plural(len(results), 'rule')}: {rules}; {plural(len(cases), 'case')}: {tail}"


def detection_json_line(result: RuleTestResult, *, root: Path | None = None) -> str:
    """One JSON object per rule: path, id, title, status, errors and every case's outcome."""
    record = {
        "path": relative_path(result.path, root),
        "id": result.rule_id,
        "title": result.title,
        "status": result.status,
        "errors": list(result.errors),
        "cases": [
            {
                "name": c.case.name,
                "expect": "match" if c.case.expect_match else "no match",
                "passed": c.passed,
                "reason": c.reason,
                "line": c.case.location.line,
            }
            for c in result.cases
        ],
    }
    return json.dumps(record, ensure_ascii=False)


def failures_markdown(
    environment: str, results: Sequence[RuleResult], *, root: Path | None = None
) -> str:
    """For a plan that was not made: the rules that failed validation, each problem's place."""
    failed = [r for r in results if r.status == "failed"]
    lines = [
        f"### Plan for `{environment}`: not made",
        "",
        f"**{summary(results)}**: nothing was compared or sent; fix the failing rules first.",
        "",
        "| file | rule | problem |",
        "|---|---|---|",
    ]
    for result in failed:
        for problem in result.errors:
            where = relative_path(problem.location.path, root)
            if problem.location.line is not None:
                where += f":{problem.location.line}"
            rule = result.title or result.rule_id or ""
            lines.append(f"| `{where}` | {_cell(rule)} | {_cell(problem.message)} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: pipes escaped, on one line."""
    return " ".join(text.replace("|", "\\|").split())
