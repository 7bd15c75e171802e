"""Runs each rule's cases: the query a deploy would send, against each case's event."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from deployer.build import BuildRequest, run_build
from deployer.config import ProjectConfig
from deployer.detection.cases import Case, CasesError, cases_path, load_cases
from deployer.detection.engine import EngineError, EventEngine
from deployer.kql import kusto_type
from deployer.model import RuleResult
from deployer.pipelines import table_columns


@dataclass(frozen=True)
class CaseResult:
    case: Case
    passed: bool
    # Why it failed: the expectation missed, or the engine's reason.
    reason: str | None = None

    def event_json(self) -> str:
        return json.dumps(dict(self.case.event), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class RuleTestResult:
    """One rule's detection tests; `errors` when the rule or its cases could not be run."""

    path: Path
    status: Literal["passed", "failed", "untested"]
    rule_id: str | None
    title: str | None
    cases: tuple[CaseResult, ...] = ()
    errors: tuple[str, ...] = ()


def run_detection_tests(
    config: ProjectConfig,
    request: BuildRequest,
    *,
    engine: EventEngine,
    on_result: Callable[[RuleTestResult], None] | None = None,
) -> list[RuleTestResult]:
    """Build the rules (without writing), then run every rule's cases on its query."""
    results = []
    for built in run_build(config, request, queries=None):
        if built.status == "skipped":
            continue
        result = _test_rule(built, engine)
        results.append(result)
        if on_result:
            on_result(result)
    return results


def _test_rule(built: RuleResult, engine: EventEngine) -> RuleTestResult:
    sidecar = cases_path(built.path)
    if not sidecar.is_file():
        return RuleTestResult(built.path, "untested", built.rule_id, built.title)
    if built.status == "failed" or built.query is None or built.table is None:
        reasons = tuple(p.message for p in built.errors) or ("the rule has no query to test",)
        return _failed(built, (f"the rule does not build: {reasons[0]}",))
    try:
        cases = load_cases(sidecar).cases
    except CasesError as error:
        return _failed(built, (str(error),))
    if not cases:
        return _failed(built, (f"{sidecar}: `cases:` is empty",))

    kusto_columns = {
        column: kusto_type(raw)
        for column, raw in table_columns(built.pipeline or "").get(built.table, {}).items()
    }
    outcomes = tuple(_run_case(case, built, kusto_columns, engine) for case in cases)
    status: Literal["passed", "failed"] = "passed" if all(o.passed for o in outcomes) else "failed"
    return RuleTestResult(built.path, status, built.rule_id, built.title, outcomes)


def _run_case(
    case: Case, built: RuleResult, columns: dict[str, str], engine: EventEngine
) -> CaseResult:
    assert built.query is not None and built.table is not None
    try:
        matched = bool(
            engine.matching(built.query, table=built.table, columns=columns, events=[case.event])
        )
    except EngineError as error:
        return CaseResult(case, False, str(error))
    if matched == case.expect_match:
        return CaseResult(case, True)
    if case.expect_match:
        return CaseResult(case, False, "expected a match, the query returned nothing")
    return CaseResult(case, False, "expected no match, the query returned the event")


def _failed(built: RuleResult, errors: Sequence[str]) -> RuleTestResult:
    return RuleTestResult(built.path, "failed", built.rule_id, built.title, (), tuple(errors))
