"""Worker processes: a build with several jobs gives exactly what one job gives, in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deployer.build import BuildRequest, run_build
from deployer.config import load_config
from deployer.model import RuleResult
from deployer.validate import QueryValidator
from deployer.workers import MAX_DEFAULT_JOBS, MIN_RULES_PER_WORKER, BuildWorkers, default_jobs

from conftest import rule_yaml


@pytest.fixture(scope="module")
def many_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough rules for workers to be used, with every kind of outcome among them."""
    root = tmp_path_factory.mktemp("many")
    rules = root / "rules"
    rules.mkdir()
    count = 3 * MIN_RULES_PER_WORKER
    for index in range(count):
        detection = f"selection:\n    CommandLine|contains: 'evil{index}'\ncondition: selection"
        if index % 7 == 3:
            # No column of imProcessCreate: fails at conversion, with the field named.
            detection = f"selection:\n    NoSuchField: 'x{index}.exe'\ncondition: selection"
        text = rule_yaml(
            title=f"Rule {index:03d}",
            rule_id=f"{index:08x}-2222-3333-4444-555555555555",
            detection=detection,
            extra="status: deprecated\n" if index == 11 else "",
        )
        if index == 11:
            text = text.replace("status: test\n", "")
        (rules / f"rule_{index:03d}.yml").write_text(text, encoding="utf-8")
    (rules / "broken.yml").write_text("title: [unclosed\n", encoding="utf-8")
    # The same id as rule_000: both fail, each naming the other.
    (rules / "twin.yml").write_text(
        rule_yaml(title="Twin", rule_id="00000000-2222-3333-4444-555555555555"), encoding="utf-8"
    )
    return root


def _build(root: Path, jobs: int, queries: QueryValidator | None, out: Path) -> list[RuleResult]:
    config = load_config(None, cwd=root)
    request = BuildRequest(out_dir=out, jobs=jobs, use_cache=False)
    return list(run_build(config, request, queries=queries))


def _written(out: Path) -> dict[str, bytes]:
    files = {path.name: path.read_bytes() for path in out.iterdir()}
    for path in out.iterdir():
        path.unlink()
    return files


def test_several_jobs_give_what_one_job_gives(many_rules: Path, tmp_path: Path) -> None:
    one = _build(many_rules, 1, None, tmp_path)
    written_by_one = _written(tmp_path)
    two = _build(many_rules, 2, None, tmp_path)

    assert two == one
    assert _written(tmp_path) == written_by_one
    assert {r.status for r in one} == {"built", "failed", "skipped"}
    assert len(written_by_one) == sum(1 for r in one if r.status == "built")


def test_queries_are_checked_the_same_with_workers(
    many_rules: Path, tmp_path: Path, queries: QueryValidator
) -> None:
    one = _build(many_rules, 1, queries, tmp_path)
    two = _build(many_rules, 2, queries, tmp_path)

    assert two == one


def test_one_pool_serves_several_builds_and_runs_in_other_processes(many_rules: Path) -> None:
    config = load_config(None, cwd=many_rules)
    request = BuildRequest(jobs=2, use_cache=False)
    with BuildWorkers(2) as workers:
        first = run_build(config, request, queries=None, workers=workers)
        second = run_build(config, request, queries=None, workers=workers)
        pids = workers.pids()

    assert first == second
    assert pids and os.getpid() not in pids


def test_the_default_is_the_cpus_available_within_a_bound() -> None:
    assert 1 <= default_jobs() <= min(len(os.sched_getaffinity(0)), MAX_DEFAULT_JOBS)
