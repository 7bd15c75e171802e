"""Conversion reads as a specification: a Sigma rule in, the exact KQL out."""

from __future__ import annotations

from pathlib import Path

import pytest
from sigma.rule import SigmaRule

from deployer.convert import Converter
from deployer.errors import RuleConversionError
from deployer.rules import SigmaSource, load_rule

from conftest import SEED_QUERY_COPY, SEED_QUERY_FILE, SEED_RULE, SHARED, rule_yaml


def _convert(yaml_text: str, pipeline: str = "sentinel_asim") -> str:
    return Converter().convert(SigmaRule.from_yaml(yaml_text), pipeline).query


def test_seed_rule_becomes_the_expected_query_byte_for_byte() -> None:
    source = load_rule(SEED_RULE)
    assert isinstance(source, SigmaSource)
    converted = Converter().convert(source.rule, "sentinel_asim")
    assert converted.query.encode() == SEED_QUERY_FILE.read_bytes()
    assert converted.table == "imProcessCreate"
    assert converted.query.endswith(")\n")


def test_the_seed_query_kept_in_tests_is_the_one_in_shared() -> None:
    shared = SHARED / "seed/expected-sentinel_asim.kql"
    if not shared.is_file():
        pytest.skip("../shared/seed not present: the copy in tests/data is used alone")
    assert SEED_QUERY_COPY.read_bytes() == shared.read_bytes()


def test_contains_all_and_any_become_and_of_or() -> None:
    detection = (
        "selection:\n"
        "    CommandLine|contains|all: [' a ', ' b ']\n"
        "    Image|endswith: '\\x.exe'\n"
        "condition: selection"
    )
    assert _convert(rule_yaml(detection=detection)) == (
        "imProcessCreate\n"
        '| where (TargetProcessCommandLine contains " a " and TargetProcessCommandLine '
        'contains " b ") and TargetProcessName endswith "\\\\x.exe"\n'
    )


def test_microsoft_xdr_pipeline_reads_device_process_events() -> None:
    detection = "selection:\n    CommandLine|contains: 'evil'\ncondition: selection"
    assert _convert(rule_yaml(detection=detection), "microsoft_xdr") == (
        'DeviceProcessEvents\n| where ProcessCommandLine contains "evil"\n'
    )


def test_azure_monitor_pipeline_reads_security_event() -> None:
    detection = "selection:\n    CommandLine|contains: 'evil'\ncondition: selection"
    assert _convert(rule_yaml(detection=detection), "azure_monitor") == (
        'SecurityEvent\n| where CommandLine contains "evil"\n'
    )


def test_a_field_the_pipeline_cannot_map_is_a_reason_not_a_crash() -> None:
    detection = "selection:\n    NoSuchSigmaField: 'x'\ncondition: selection"
    with pytest.raises(RuleConversionError, match="NoSuchSigmaField"):
        _convert(rule_yaml(detection=detection))


def test_an_unsupported_log_source_is_a_reason() -> None:
    text = rule_yaml().replace("category: process_creation", "category: no_such_category")
    with pytest.raises(RuleConversionError):
        _convert(text)


def test_an_exception_outside_pysigma_becomes_a_reason(tmp_path: Path) -> None:
    # Without a category the backend picks the table by EventID and calls int() on the value:
    # a ValueError, outside pySigma's own error type (sigma-cli would stop the whole run).
    detection = "selection:\n    EventID: 'four'\ncondition: selection"
    path = tmp_path / "r.yml"
    text = rule_yaml(detection=detection).replace("    category: process_creation\n", "")
    path.write_text(text, encoding="utf-8")
    source = load_rule(path)
    assert isinstance(source, SigmaSource)
    with pytest.raises(RuleConversionError) as caught:
        Converter().convert(source.rule, "sentinel_asim")
    assert "ValueError" in str(caught.value)
