"""Sigma metadata and settings become the desired analytics rule."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from deployer.analytics import RuleInputs, analytics_rule, describe
from deployer.config import parse_settings
from deployer.convert import Converter
from deployer.model import AnalyticsRule, EntityMapping, Problem, RuleMetadata, Severity
from deployer.pipelines import table_columns
from deployer.rules import SigmaSource, load_rule

from conftest import rule_yaml


def _rule(
    tmp_path: Path, text: str, *, defaults: str = "", overrides: str = "", pipeline: str = ""
) -> tuple[AnalyticsRule | None, tuple[Problem, ...]]:
    path = tmp_path / "rule.yml"
    path.write_text(text, encoding="utf-8")
    source = load_rule(path)
    assert isinstance(source, SigmaSource), source
    pipeline = pipeline or "sentinel_asim"
    converted = Converter().convert(source.rule, pipeline)
    layers = []
    for raw in (defaults, overrides):
        layer, errors = parse_settings(_toml_table(raw), "test")
        assert not errors
        layers.append(layer)
    columns = table_columns(pipeline).get(converted.table or "", {})
    return analytics_rule(
        source.metadata,
        converted,
        sentinel=source.sentinel,
        inputs=RuleInputs(defaults=layers[0], overrides=layers[1], table_columns=tuple(columns)),
        source=source.location(),
    )


def _toml_table(text: str) -> dict[str, object]:
    return tomllib.loads(text)


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        ("informational", Severity.INFORMATIONAL),
        ("low", Severity.LOW),
        ("medium", Severity.MEDIUM),
        ("high", Severity.HIGH),
        ("critical", Severity.HIGH),
    ],
)
def test_severity_follows_the_sigma_level(tmp_path: Path, level: str, severity: Severity) -> None:
    rule, _ = _rule(tmp_path, rule_yaml(level=level))
    assert rule is not None and rule.severity is severity


def test_the_description_lists_false_positives_and_references(tmp_path: Path) -> None:
    text = rule_yaml(extra="falsepositives:\n  - Admins\nreferences:\n  - https://example.org/a\n")
    rule, _ = _rule(tmp_path, text)
    assert rule is not None
    assert rule.description == (
        "A rule written for a test.\n\n"
        "False positives:\n- Admins\n\n"
        "References:\n- https://example.org/a"
    )


def test_the_description_falls_back_to_the_title() -> None:
    metadata = RuleMetadata("id", "The Title", "", None, None, (), (), (), None)
    assert describe(metadata) == "The Title"


def test_asim_process_rules_map_host_account_and_process(tmp_path: Path) -> None:
    rule, problems = _rule(tmp_path, rule_yaml())
    assert rule is not None and not problems
    assert rule.entity_mappings == (
        EntityMapping("Host", (("HostName", "DvcHostname"),)),
        EntityMapping("Account", (("FullName", "ActorUsername"),)),
        EntityMapping(
            "Process",
            (("ProcessId", "TargetProcessId"), ("CommandLine", "TargetProcessCommandLine")),
        ),
    )


def test_xdr_process_rules_map_device_account_and_process(tmp_path: Path) -> None:
    rule, _ = _rule(tmp_path, rule_yaml(), pipeline="microsoft_xdr")
    assert rule is not None
    assert [m.entity_type for m in rule.entity_mappings] == ["Host", "Account", "Process"]
    assert rule.entity_mappings[0].field_mappings == (("FullName", "DeviceName"),)


def test_the_rule_can_replace_or_drop_its_entity_mappings(tmp_path: Path) -> None:
    own = "sentinel:\n  entity_mappings:\n    - entity: IP\n      fields: {Address: DvcIpAddr}\n"
    rule, _ = _rule(tmp_path, rule_yaml(extra=own))
    assert rule is not None
    assert rule.entity_mappings == (EntityMapping("IP", (("Address", "DvcIpAddr"),)),)
    rule, _ = _rule(tmp_path, rule_yaml(extra="sentinel:\n  entity_mappings: []\n"))
    assert rule is not None and rule.entity_mappings == ()


def test_settings_layer_defaults_then_rule_then_environment(tmp_path: Path) -> None:
    own = "sentinel:\n  query_frequency: PT10M\n  query_period: PT30M\n  enabled: true\n"
    rule, _ = _rule(
        tmp_path,
        rule_yaml(extra=own),
        defaults='query_frequency = "PT2H"\nquery_period = "PT2H"\ntrigger_threshold = 3',
        overrides='enabled = false\ndisplay_name_prefix = "[PROD] "\nseverity = "low"',
    )
    assert rule is not None
    settings = rule.settings
    assert settings.query_frequency == timedelta(minutes=10)  # the rule beats the defaults
    assert settings.query_period == timedelta(minutes=30)
    assert settings.trigger_threshold == 3  # from the defaults
    assert settings.enabled is False  # the environment beats the rule
    assert rule.display_name == "[PROD] Test Rule"
    assert rule.severity is Severity.LOW


def test_a_bad_setting_in_the_rule_is_an_error_naming_the_field(tmp_path: Path) -> None:
    rule, problems = _rule(tmp_path, rule_yaml(extra="sentinel:\n  query_frequency: 5m\n"))
    assert rule is None
    assert problems[0].message.startswith("sentinel.query_frequency: '5m' is not an ISO 8601")


def test_an_unknown_tactic_tag_is_an_error(tmp_path: Path) -> None:
    rule, problems = _rule(tmp_path, rule_yaml(tags="    - attack.not-a-tactic"))
    assert rule is None
    assert any("attack.not-a-tactic" in p.message for p in problems)


def test_a_missing_level_deploys_as_medium_with_a_warning(tmp_path: Path) -> None:
    text = "\n".join(line for line in rule_yaml().splitlines() if not line.startswith("level"))
    rule, problems = _rule(tmp_path, text)
    assert rule is not None and rule.severity is Severity.MEDIUM
    assert [p.severity for p in problems] == ["warning"]
