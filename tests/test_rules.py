"""Loading rule files: one file, one rule; every problem names the file and, where known, line."""

from __future__ import annotations

from pathlib import Path

from deployer.rules import (
    LoadFailure,
    SigmaSource,
    duplicate_ids,
    find_rule_files,
    load_rule,
    sigma_lint,
)

from conftest import SEED_ID, SEED_RULE, rule_yaml


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_seed_rule_loads_with_its_metadata_and_key_lines() -> None:
    source = load_rule(SEED_RULE)
    assert isinstance(source, SigmaSource)
    assert source.rule_id == SEED_ID
    assert source.title == "Cloudflared Tunnel Execution"
    assert source.metadata.level == "medium"
    assert (
        source.metadata.author == "Janantha Marasinghe, Nasreddine Bencherchali (Nextron Systems)"
    )
    assert source.lines["detection"] == 20
    assert source.sentinel == {}


def test_rules_are_found_recursively_sorted_and_sidecar_tests_are_not_rules(
    tmp_path: Path,
) -> None:
    b = _write(tmp_path, "b/deep/b.yml", rule_yaml())
    a = _write(tmp_path, "a.yaml", rule_yaml())
    _write(tmp_path, "a.tests.yml", "cases: []\n")
    _write(tmp_path, "notes.txt", "not a rule")
    assert find_rule_files([tmp_path]) == [a, b]


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yml", "title: x\ndetection:\n  sel: [a, b\n  condition: sel\n")
    failure = load_rule(path)
    assert isinstance(failure, LoadFailure)
    (problem,) = failure.problems
    assert problem.code == "yaml"
    assert problem.location.line is not None
    assert problem.line().startswith(f"{path}:{problem.location.line}: error")


def test_a_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "dup.yml", rule_yaml() + "title: again\n")
    failure = load_rule(path)
    assert isinstance(failure, LoadFailure)
    assert "duplicate key 'title'" in failure.problems[0].message
    assert failure.problems[0].location.line == rule_yaml().count("\n") + 1


def test_a_rule_without_id_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    text = "\n".join(line for line in rule_yaml().splitlines() if not line.startswith("id:"))
    failure = load_rule(_write(tmp_path, "noid.yml", text))
    assert isinstance(failure, LoadFailure)
    assert [p.code for p in failure.problems] == ["no-id"]
    assert "add a UUID" in failure.problems[0].message


def test_several_documents_in_one_file_are_refused(tmp_path: Path) -> None:
    failure = load_rule(_write(tmp_path, "two.yml", rule_yaml() + "---\n" + rule_yaml()))
    assert isinstance(failure, LoadFailure)
    assert "one Sigma rule in each file" in failure.problems[0].message


def test_an_unknown_modifier_is_reported_at_the_detection_line(tmp_path: Path) -> None:
    detection = "selection:\n    CommandLine|nosuchmodifier: x\ncondition: selection"
    failure = load_rule(_write(tmp_path, "mod.yml", rule_yaml(detection=detection)))
    assert isinstance(failure, LoadFailure)
    (problem,) = failure.problems
    assert "nosuchmodifier" in problem.message
    assert problem.location.line == rule_yaml().splitlines().index("detection:") + 1


def test_an_invalid_level_is_reported_at_its_line(tmp_path: Path) -> None:
    failure = load_rule(_write(tmp_path, "lvl.yml", rule_yaml(level="severe")))
    assert isinstance(failure, LoadFailure)
    assert failure.problems[0].location.line == rule_yaml().count("\n")


def test_correlation_rules_are_not_taken_for_detection_rules(tmp_path: Path) -> None:
    text = rule_yaml() + "correlation:\n  type: event_count\n"
    failure = load_rule(_write(tmp_path, "corr.yml", text))
    assert isinstance(failure, LoadFailure)
    assert failure.problems[0].code == "not-a-rule"


def test_the_sentinel_block_is_kept_for_later_stages(tmp_path: Path) -> None:
    text = rule_yaml(extra="sentinel:\n  query_frequency: PT5M\n  pipeline: microsoft_xdr\n")
    source = load_rule(_write(tmp_path, "s.yml", text))
    assert isinstance(source, SigmaSource)
    assert source.sentinel == {"query_frequency": "PT5M", "pipeline": "microsoft_xdr"}
    assert source.lines["sentinel"] == text.splitlines().index("sentinel:") + 1


def test_two_files_with_one_id_each_get_an_error_naming_the_other(tmp_path: Path) -> None:
    first = load_rule(_write(tmp_path, "one.yml", rule_yaml(title="One")))
    second = load_rule(_write(tmp_path, "two.yml", rule_yaml(title="Two")))
    third = load_rule(_write(tmp_path, "three.yml", rule_yaml(rule_id=SEED_ID)))
    sources = [s for s in (first, second, third) if isinstance(s, SigmaSource)]
    problems = duplicate_ids(sources)
    assert [p.location.path.name for p in problems] == ["one.yml", "two.yml"]
    assert "two.yml" in problems[0].message and "one.yml" in problems[1].message


def test_pysigma_checks_a_detection_the_condition_forgets(tmp_path: Path) -> None:
    detection = (
        "selection:\n    CommandLine|contains: x\n"
        "filter:\n    Image|endswith: y\n"
        "condition: selection"
    )
    source = load_rule(_write(tmp_path, "dangling.yml", rule_yaml(detection=detection)))
    assert isinstance(source, SigmaSource)
    problems = sigma_lint(source)
    assert [p.severity for p in problems] == ["error"]
    assert "detection_name: filter" in problems[0].message


def test_pysigma_style_findings_are_warnings(tmp_path: Path) -> None:
    detection = "selection:\n    CommandLine|contains: 'a\\*b'\ncondition: selection"
    source = load_rule(_write(tmp_path, "escaped.yml", rule_yaml(detection=detection)))
    assert isinstance(source, SigmaSource)
    assert [p.severity for p in sigma_lint(source)] == ["warning"]


def test_the_seed_rule_passes_pysigmas_checks() -> None:
    source = load_rule(SEED_RULE)
    assert isinstance(source, SigmaSource)
    assert sigma_lint(source) == ()
