"""The build cache: what serves a rule from it, what rebuilds it, and that a broken entry is
only a miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployer.build import BuildRequest, run_build
from deployer.cache import CACHE_DIR, rule_key, run_key, tool_digest
from deployer.config import load_config
from deployer.model import RuleResult
from deployer.render import TEMPLATE_NAME, default_templates_dir

from conftest import rule_yaml

MARKER = "served from the cache\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "evil.yml").write_text(rule_yaml(title="Evil"), encoding="utf-8")
    (rules / "bad.yml").write_text(
        rule_yaml(
            title="Bad",
            rule_id="22222222-2222-3333-4444-555555555555",
            detection="selection:\n    NoSuchField: 'x.exe'\ncondition: selection",
        ),
        encoding="utf-8",
    )
    (tmp_path / "sentinel-deployer.toml").write_text('[project]\nname = "p"\n', encoding="utf-8")
    return tmp_path


def _build(project: Path) -> list[RuleResult]:
    config = load_config(project / "sentinel-deployer.toml", cwd=project)
    return run_build(config, BuildRequest(out_dir=project / "build"), queries=None)


def _entries(project: Path) -> list[tuple[Path, list[str]]]:
    """Each cache file with its lines: the format, then `key TAB path TAB outcome JSON`."""
    return [
        (path, path.read_text(encoding="utf-8").splitlines())
        for path in (project / CACHE_DIR).glob("*.jsonl")
    ]


def _mark_cache(project: Path) -> int:
    """Replace the query of every cached built rule with MARKER; the number of entries marked."""
    marked = 0
    for path, lines in _entries(project):
        changed = [lines[0]]
        for line in lines[1:]:
            key, rule, text = line.split("\t", 2)
            outcome = json.loads(text)
            if outcome["built"] is not None:
                outcome["built"]["sent_query"] = MARKER
                marked += 1
            changed.append(f"{key}\t{rule}\t{json.dumps(outcome)}")
        path.write_text("\n".join(changed) + "\n", encoding="utf-8")
    return marked


def _queries(results: list[RuleResult]) -> dict[str, str | None]:
    return {r.path.name: r.query for r in results}


def test_an_unchanged_rule_is_served_from_the_cache(project: Path) -> None:
    first = _build(project)
    assert [r.status for r in first] == ["failed", "built"]
    assert _mark_cache(project) == 1

    again = _build(project)

    assert _queries(again)["evil.yml"] == MARKER
    # The failed rule comes back from the cache with the same reasons.
    assert again[0] == first[0]


def test_a_changed_rule_is_built_again(project: Path) -> None:
    _build(project)
    _mark_cache(project)
    rule = project / "rules" / "evil.yml"
    rule.write_text(rule.read_text(encoding="utf-8").replace("'evil'", "'worse'"), "utf-8")

    again = _queries(_build(project))

    assert "worse" in (again["evil.yml"] or "")


def test_a_changed_config_rebuilds_every_rule(project: Path) -> None:
    _build(project)
    _mark_cache(project)
    (project / "sentinel-deployer.toml").write_text(
        '[project]\nname = "p"\n\n[defaults]\nquery_frequency = "PT2H"\nquery_period = "PT2H"\n',
        encoding="utf-8",
    )

    again = _build(project)

    assert _queries(again)["evil.yml"] != MARKER
    assert again[1].body is not None
    assert again[1].body["properties"]["queryFrequency"] == "PT2H"


def test_a_changed_template_rebuilds_every_rule(project: Path) -> None:
    templates = project / "templates"
    templates.mkdir()
    original = (default_templates_dir() / TEMPLATE_NAME).read_text(encoding="utf-8")
    (templates / TEMPLATE_NAME).write_text(original, encoding="utf-8")
    config = project / "sentinel-deployer.toml"
    config.write_text('[project]\nname = "p"\ntemplates = "templates"\n', encoding="utf-8")
    _build(project)
    _mark_cache(project)

    # The same template with one more blank line: another file, so another key.
    (templates / TEMPLATE_NAME).write_text(original + "\n", encoding="utf-8")
    again = _queries(_build(project))

    assert again["evil.yml"] != MARKER


def test_a_test_file_appearing_rebuilds_the_rule(project: Path) -> None:
    first = _build(project)
    assert any(p.code == "no-tests" for p in first[1].problems)
    (project / "rules" / "evil.tests.yml").write_text("cases: []\n", encoding="utf-8")

    again = _build(project)

    assert not any(p.code == "no-tests" for p in again[1].problems)


def test_library_versions_and_the_tools_source_are_in_every_key(tmp_path: Path) -> None:
    rule = tmp_path / "r.yml"
    rule.write_text(rule_yaml(), encoding="utf-8")
    installed = tool_digest()
    other_pysigma = tool_digest({"pySigma": "1.5.2", "pySigma-backend-kusto": "1.0.1"})
    assert installed != other_pysigma

    keys = {
        rule_key(run_key("settings", [], kql=None, tool=tool), rule, has_tests=False)
        for tool in (installed, other_pysigma)
    }

    assert len(keys) == 2
    # The same inputs give the same key: nothing else (such as file times) goes in.
    again = rule_key(run_key("settings", [], kql=None, tool=installed), rule, has_tests=False)
    assert again in keys


def test_checking_queries_with_kusto_language_is_in_the_key(tmp_path: Path) -> None:
    unchecked = run_key("settings", [], kql=None, tool="t")
    checked = run_key("settings", [], kql="Kusto.Language 12.4.1", tool="t")
    newer = run_key("settings", [], kql="Kusto.Language 12.5.0", tool="t")
    assert len({unchecked, checked, newer}) == 3


def test_a_corrupt_cache_entry_is_ignored_and_replaced(project: Path) -> None:
    first = _build(project)
    [(path, lines)] = _entries(project)
    assert len(lines) == 3
    # One entry cut short, the other's outcome no longer an outcome.
    key, rule, text = lines[1].split("\t", 2)
    other_key, other_rule, _ = lines[2].split("\t", 2)
    damaged = [lines[0], f"{key}\t{rule}\t{text[:40]}", f"{other_key}\t{other_rule}\t[1, 2]"]
    path.write_text("\n".join(damaged) + "\n", encoding="utf-8")

    again = _build(project)

    assert again == first
    [(_, rewritten)] = _entries(project)
    assert [json.loads(line.split("\t", 2)[2])["path"] for line in rewritten[1:]]


@pytest.mark.parametrize("damage", ["{not json", "", "99\nkey\tpath\t{}", "\x00\xff"])
def test_a_corrupt_cache_file_is_ignored_and_replaced(project: Path, damage: str) -> None:
    first = _build(project)
    [(path, _)] = _entries(project)
    path.write_text(damage, encoding="utf-8", errors="surrogateescape")

    again = _build(project)

    assert again == first
    [(_, rewritten)] = _entries(project)
    assert rewritten[0] == "1" and len(rewritten) == 3


def test_building_one_file_keeps_the_other_files_entries(project: Path) -> None:
    _build(project)
    _mark_cache(project)
    config = load_config(project / "sentinel-deployer.toml", cwd=project)
    only = BuildRequest(paths=(project / "rules" / "bad.yml",))
    run_build(config, only, queries=None)

    again = _build(project)

    assert _queries(again)["evil.yml"] == MARKER


def test_no_cache_reads_and_writes_nothing(project: Path) -> None:
    config = load_config(project / "sentinel-deployer.toml", cwd=project)
    request = BuildRequest(out_dir=project / "build", use_cache=False)

    results = run_build(config, request, queries=None)

    assert [r.status for r in results] == ["failed", "built"]
    assert not (project / CACHE_DIR).exists()
