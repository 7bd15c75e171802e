"""Validation: the service's limits, ATT&CK coverage, backend defects and the KQL itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deployer.analytics import RuleInputs, analytics_rule
from deployer.build import BuildRequest, run_build
from deployer.config import load_config
from deployer.convert import Converter
from deployer.kql import KqlLanguageService
from deployer.model import AnalyticsRule, EntityMapping
from deployer.pipelines import table_columns
from deployer.render import Renderer
from deployer.rules import SigmaSource, load_rule
from deployer.validate import (
    QueryValidator,
    duplicate_display_names,
    known_defects,
    validate_rule,
)

from conftest import SEED_RULE

COLUMNS = tuple(table_columns("sentinel_asim")["imProcessCreate"])


@pytest.fixture(scope="module")
def seed() -> tuple[SigmaSource, AnalyticsRule]:
    source = load_rule(SEED_RULE)
    assert isinstance(source, SigmaSource)
    converted = Converter().convert(source.rule, "sentinel_asim")
    rule, _ = analytics_rule(
        source.metadata,
        converted,
        sentinel={},
        inputs=RuleInputs(table_columns=COLUMNS),
        source=source.location(),
    )
    assert rule is not None
    return source, rule


def _problems(
    source: SigmaSource, rule: AnalyticsRule, queries: QueryValidator | None = None
) -> list[str]:
    body = Renderer().render(rule, api_version="2025-12-01").request_body()
    problems = validate_rule(
        rule,
        body,
        api_version="2025-12-01",
        lines=source.lines,
        queries=queries,
        table_columns=COLUMNS,
    )
    return [p.line() for p in problems]


def test_the_seed_rule_is_valid_including_its_kql(
    seed: tuple[SigmaSource, AnalyticsRule], queries: QueryValidator
) -> None:
    assert _problems(*seed, queries) == []


def test_a_query_over_10000_characters_points_at_the_detection(
    seed: tuple[SigmaSource, AnalyticsRule],
) -> None:
    source, rule = seed
    long_rule = dataclasses.replace(rule, query=rule.query + "//" + "x" * 10_000)
    (line,) = _problems(source, long_rule)
    assert line.startswith(f"{SEED_RULE}:20: error")
    assert "10,0" in line and "the service allows 10,000" in line
    assert "split the rule" in line


def test_an_unknown_column_is_a_kql_error_with_its_position(
    seed: tuple[SigmaSource, AnalyticsRule], queries: QueryValidator
) -> None:
    source, rule = seed
    broken = dataclasses.replace(
        rule, query='imProcessCreate\n| where TargetProcessFilename =~ "cloudflared.exe"\n'
    )
    (line,) = _problems(source, broken, queries)
    assert "KQL" in line and "TargetProcessFilename" in line
    assert "query line 2, column 9" in line


def test_a_type_mismatch_is_a_kql_error(
    seed: tuple[SigmaSource, AnalyticsRule], queries: QueryValidator
) -> None:
    source, rule = seed
    broken = dataclasses.replace(rule, query="imProcessCreate\n| where TimeGenerated contains 5\n")
    assert any("KQL" in line for line in _problems(source, broken, queries))


def test_a_technique_without_any_of_its_tactics_is_an_error(
    seed: tuple[SigmaSource, AnalyticsRule],
) -> None:
    source, rule = seed
    lines = _problems(source, dataclasses.replace(rule, tactics=("Impact",)))
    assert [line.split("technique ")[1][:5] for line in lines] == ["T1102", "T1090", "T1572"]
    assert "belongs to CommandAndControl, none of which the rule lists" in lines[0]
    assert lines[0].startswith(f"{SEED_RULE}:12:")


def test_an_entity_column_the_table_lacks_is_an_error(
    seed: tuple[SigmaSource, AnalyticsRule],
) -> None:
    source, rule = seed
    mapped = dataclasses.replace(
        rule, entity_mappings=(EntityMapping("Host", (("HostName", "NoSuchColumn"),)),)
    )
    (line,) = _problems(source, mapped)
    assert "NoSuchColumn" in line


def test_keyword_rules_are_a_known_backend_defect() -> None:
    assert known_defects('imProcessCreate\n| where "evil" or "bad"\n')
    assert not known_defects('imProcessCreate\n| where TargetProcessCommandLine contains "a*b"\n')


def test_display_names_must_be_unique_ignoring_case(
    seed: tuple[SigmaSource, AnalyticsRule],
) -> None:
    _, rule = seed
    twin = dataclasses.replace(rule, rule_id="other", display_name=rule.display_name.upper())
    other = dataclasses.replace(rule, rule_id="third", display_name="Something else")
    problems = duplicate_display_names([rule, twin, other])
    assert [p.rule_id for p in problems] == [rule.rule_id, "other"]


def test_every_rule_in_rules_builds_validates_and_has_a_unique_id(
    tmp_path: Path, queries: QueryValidator
) -> None:
    """The content test: the project's own rules, through every stage, failing once with all."""
    config = load_config(None, cwd=SEED_RULE.parents[3])
    results = run_build(config, BuildRequest(out_dir=tmp_path), queries=queries)
    failures = [f"{r.path}: {[p.message for p in r.problems]}" for r in results if r.errors]
    assert results and not failures, "\n".join(failures)
    ids = [r.rule_id for r in results]
    assert len(ids) == len(set(ids))


def test_a_query_too_deep_for_kusto_language_fails_only_that_rule(
    seed: tuple[SigmaSource, AnalyticsRule], kql_service: KqlLanguageService
) -> None:
    source, rule = seed
    # Past about 2,000 nested terms the JavaScript stack overflows (see tests/test_kql.py).
    deep = KqlLanguageService(max_analysis_depth=100_000)
    try:
        queries = QueryValidator(deep, table_columns)
        chain = " or ".join(f'TargetProcessCommandLine contains "v{i}"' for i in range(4000))
        lines = _problems(
            source, dataclasses.replace(rule, query=f"imProcessCreate\n| where {chain}\n"), queries
        )
        assert any("could not check the query" in line for line in lines), lines
        # The same process still answers for the next rule.
        assert _problems(source, rule, queries) == []
    finally:
        deep.close()
