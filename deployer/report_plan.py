"""Plans and ledgers as text (people), JSON (machines) and Markdown (GitHub summaries)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from deployer.plan import CHANGES, Plan, plan_to_json
from deployer.report import plural

if TYPE_CHECKING:
    # Types only: apply.py loads the Azure SDK and the runner DuckDB, which a plan's text
    # does not need.
    from deployer.apply import LedgerEntry
    from deployer.detection.runner import RuleTestResult

_SYMBOLS = {
    "create": "+",
    "update": "~",
    "adopt": "~",
    "delete": "-",
    "drift": "!",
    "conflict": "!",
    "orphan": "?",
    "unchanged": "=",
}
_WORDS = {
    "create": "to create",
    "update": "to update",
    "adopt": "to adopt",
    "delete": "to delete",
    "drift": "drifted",
    "conflict": "in conflict",
    "orphan": "no longer in rules/",
    "unchanged": "unchanged",
}


def plan_summary(plan: Plan) -> str:
    """'3 rules: 1 to create, 1 to update, 1 unchanged' for one environment."""
    counts = plan.counts()
    parts = [f"{counts[action]} {_WORDS[action]}" for action in _WORDS if counts[action]]
    total = plural(sum(counts.values()), "rule")
    return f"{plan.environment}: {total}: {', '.join(parts) or 'none'}"


def plan_text(plan: Plan) -> Iterable[str]:
    yield f"Plan for {plan.target}"
    for change in plan.changes:
        if change.action == "unchanged":
            continue
        symbol = _SYMBOLS[change.action]
        yield f"  {symbol} {change.action:<9} {change.display_name}  ({change.rule_id})"
        if change.note:
            yield f"      {change.note}"
        for field in change.fields:
            if field.path == "query":
                continue
            yield f"      {field.path}: {_short(field.before)} -> {_short(field.after)}"
        if change.query_diff:
            yield "      query:"
            for line in change.query_diff.splitlines():
                yield f"        {line}"
    if not plan.has_changes:
        yield "  no changes: the workspace matches the rules"


def plan_markdown(plan: Plan, *, tests: Mapping[str, RuleTestResult] | None = None) -> str:
    """The plan for a GitHub job summary or pull-request comment.

    With `tests` (detection-test results by rule id), each changed rule shows its results
    beside its diff, and a failing case is named with the event it was given.
    """
    lines = [f"### Plan for `{plan.environment}`", "", f"Target: {plan.target}", ""]
    lines.append(f"**{plan_summary(plan).split(': ', 1)[1]}**")
    changes = [c for c in plan.changes if c.action != "unchanged"]
    if not changes:
        lines += ["", "No changes: the workspace matches the rules."]
        return "\n".join(lines) + "\n"
    header = "| | rule | action | source |" + (" detection tests |" if tests is not None else "")
    lines += ["", header, _rule_line(header)]
    for change in changes:
        row = (
            f"| {_SYMBOLS[change.action]} | {_cell(change.display_name)} | {change.action} | "
            f"{_cell(change.source or '')} |"
        )
        if tests is not None:
            row += f" {_test_cell(tests.get(change.rule_id.lower()), change.action)} |"
        lines.append(row)
    for change in changes:
        result = tests.get(change.rule_id.lower()) if tests is not None else None
        failing = [c for c in result.cases if not c.passed] if result else []
        problems = list(result.errors) if result else []
        if not (change.fields or change.note or failing or problems):
            continue
        lines += [
            "",
            f"<details><summary>{_cell(change.display_name)}: {change.action}</summary>",
            "",
        ]
        if change.note:
            lines += [change.note, ""]
        for field in change.fields:
            if field.path != "query":
                lines.append(
                    f"- `{field.path}`: `{_short(field.before)}` → `{_short(field.after)}`"
                )
        if change.query_diff:
            lines += ["", "```diff", change.query_diff.rstrip("\n"), "```"]
        for problem in problems:
            lines += ["", f"Detection tests could not run: {_cell(problem)}"]
        for case in failing:
            expected = "must match" if case.case.expect_match else "must not match"
            lines += [
                "",
                f"Detection test **{_cell(case.case.name)}** ({expected}) failed: "
                f"{_cell(case.reason or '')}",
                "",
                "```json",
                case.event_json(),
                "```",
            ]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _rule_line(header: str) -> str:
    return "|" + "---|" * (header.count("|") - 1)


def _test_cell(result: RuleTestResult | None, action: str) -> str:
    if action in {"delete", "orphan"}:
        return ""
    if result is None:
        return "not run"
    if result.status == "untested":
        return "no tests"
    passed = sum(1 for case in result.cases if case.passed)
    if result.status == "passed":
        return f"✅ {passed}/{len(result.cases)} cases pass"
    if result.errors and not result.cases:
        return "❌ could not run"
    return f"❌ {len(result.cases) - passed} of {len(result.cases)} cases fail"


def plan_json(plan: Plan) -> str:
    return json.dumps(plan_to_json(plan), ensure_ascii=False, indent=2)


def ledger_lines(entries: Sequence[LedgerEntry]) -> Iterable[str]:
    for entry in entries:
        yield f"{entry.outcome:<9} {entry.display_name}  ({entry.rule_id})"
        if entry.message and entry.outcome != "unchanged":
            yield f"  {entry.message}"


def ledger_summary(environment: str, entries: Sequence[LedgerEntry]) -> str:
    counts: Counter[str] = Counter(entry.outcome for entry in entries)
    order = ("created", "updated", "deleted", "unchanged", "skipped", "refused", "failed")
    parts = [f"{counts[o]} {o}" for o in order if counts[o]]
    return f"{environment}: {plural(len(entries), 'rule')}: {', '.join(parts) or 'nothing to do'}"


def ledger_markdown(environment: str, entries: Sequence[LedgerEntry]) -> str:
    """The ledger for a GitHub job summary: counts, then one row per rule that was touched."""
    lines = [f"### Deployed to `{environment}`", ""]
    lines.append(f"**{ledger_summary(environment, entries).split(': ', 1)[1]}**")
    shown = [e for e in entries if e.outcome != "unchanged"]
    if not shown:
        return "\n".join(lines) + "\n"
    lines += ["", "| rule | action | outcome | detail |", "|---|---|---|---|"]
    for entry in shown:
        mark = "❌ " if entry.outcome in ("failed", "refused") else ""
        detail = entry.message or ""
        if entry.request_id:
            detail += f" (request id {entry.request_id})"
        lines.append(
            f"| {_cell(entry.display_name)} | {entry.action} | {mark}{entry.outcome} | "
            f"{_cell(detail)} |"
        )
    return "\n".join(lines) + "\n"


def ledger_json(entries: Sequence[LedgerEntry]) -> list[dict[str, Any]]:
    return [
        {
            "rule_id": e.rule_id,
            "display_name": e.display_name,
            "action": e.action,
            "outcome": e.outcome,
            "message": e.message,
            "status": e.status,
            "code": e.code,
            "request_id": e.request_id,
        }
        for e in entries
    ]


def changes_count(plan: Plan) -> int:
    return sum(1 for change in plan.changes if change.action in CHANGES)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
