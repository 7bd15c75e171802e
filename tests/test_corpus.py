"""The SigmaHQ process_creation corpus through every pipeline: a result and a reason per file.

Validation only (no output folder), with the real Kusto.Language. Counts per status and the
failure reasons, grouped, are printed (pytest -s) and written to corpus-<pipeline>.json in the
test's tmp folder.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from deployer.build import BuildRequest, run_build
from deployer.config import load_config
from deployer.model import RuleResult
from deployer.validate import QueryValidator

from conftest import CORPUS

pytestmark = pytest.mark.corpus

# The snapshot of SigmaHQ's rules/windows/process_creation in ../shared.
CORPUS_FILES = 1183

# Lower bounds on `valid`, a little under what was measured (pySigma 1.5.1, backend 1.0.1,
# ATT&CK v18.1, Kusto.Language 12.4.1): sentinel_asim 568, microsoft_xdr 1,073,
# azure_monitor 459. Most failures are the backend refusing fields the pipeline's table lacks,
# and corpus tags for techniques newer than ATT&CK v18.1. A drop past the margin means a check
# started refusing good rules, or conversion broke.
MIN_VALID = {"sentinel_asim": 550, "microsoft_xdr": 1050, "azure_monitor": 440}

_CONVERT_PREFIX = re.compile(r"^cannot convert with the \w+ pipeline: ")
_SCHEMA_SUFFIX = re.compile(r" \(\w+ schema\)$")
# Positions and lengths vary per rule; ids such as T1685 or KS002 (a letter before) do not.
_NUMBER = re.compile(r"(?<![A-Za-z\d])\d+(?:,\d{3})*")
_UNKNOWN_FIELD = re.compile(r"field name encountered: (\S+?)\. ")


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"SigmaHQ corpus not found at {CORPUS}")
    return CORPUS


def reason(message: str) -> str:
    """A failure message without what varies per rule, cut to its first 60 characters."""
    text = _SCHEMA_SUFFIX.sub("", _CONVERT_PREFIX.sub("", message))
    return _NUMBER.sub("#", text)[:60]


def tally(results: list[RuleResult], seconds: float) -> dict[str, object]:
    failed = [r for r in results if r.status == "failed"]
    errors = [p for r in failed for p in r.errors]
    fields = Counter(m.group(1) for p in errors if (m := _UNKNOWN_FIELD.search(p.message)))
    return {
        "seconds": round(seconds, 1),
        "rules": len(results),
        "statuses": dict(Counter(r.status for r in results).most_common()),
        # A failed rule counts once per code, however many errors of that code it has.
        "failed_rules_by_code": dict(
            Counter(code for r in failed for code in {p.code for p in r.errors}).most_common()
        ),
        "errors_by_reason": dict(Counter(reason(p.message) for p in errors).most_common()),
        "unknown_fields": dict(fields.most_common()),
    }


@pytest.mark.parametrize("pipeline", ["sentinel_asim", "microsoft_xdr", "azure_monitor"])
def test_every_corpus_rule_gets_one_result_and_every_failure_a_reason(
    corpus: Path, queries: QueryValidator, tmp_path: Path, pipeline: str
) -> None:
    files = sorted(p for p in corpus.rglob("*") if p.suffix in (".yml", ".yaml"))
    config = load_config(None, cwd=tmp_path)

    start = time.monotonic()
    results = run_build(config, BuildRequest(paths=(corpus,), pipeline=pipeline), queries=queries)
    counts = tally(results, time.monotonic() - start)

    report = tmp_path / f"corpus-{pipeline}.json"
    report.write_text(json.dumps(counts, indent=2), encoding="utf-8")
    print(f"\n{pipeline}: {report}\n{json.dumps(counts, indent=2)}")

    assert len(files) == CORPUS_FILES
    assert [r.path for r in results] == files
    assert {r.status for r in results} <= {"valid", "failed", "skipped"}
    bad = []
    for result in results:
        if result.status == "failed" and not result.errors:
            bad.append(f"{result.path}: failed without an error")
        if result.status != "failed" and result.errors:
            bad.append(f"{result.path}: {result.status} with errors")
        if result.status == "valid" and not result.query:
            bad.append(f"{result.path}: valid without a query")
        for problem in result.problems:
            line = problem.line()
            if not problem.message.strip() or "\n" in problem.message:
                bad.append(f"{result.path}: not one line: {problem.message!r}")
            if problem.location.path != result.path or not line.startswith(str(result.path)):
                bad.append(f"{result.path}: names another file: {line}")
            if "Traceback" in problem.message:
                bad.append(f"{result.path}: a traceback: {line}")
    assert not bad, "\n".join(bad)
    statuses = counts["statuses"]
    assert isinstance(statuses, dict)
    assert statuses.get("valid", 0) >= MIN_VALID[pipeline], json.dumps(counts, indent=2)
