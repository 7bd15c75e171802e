"""Detection tests: the sidecar format, and the engine answering as Kusto's documentation says.

Each engine expectation below was written from the Kusto documentation cited next to it, not
from the engine's output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from deployer.build import BuildRequest
from deployer.config import load_config
from deployer.detection.cases import CasesError, cases_path, load_cases
from deployer.detection.engine import EngineError, EventEngine, kusto_compatible
from deployer.detection.runner import run_detection_tests

from conftest import REPO, SEED_RULE

LEARN = "https://learn.microsoft.com/kusto/query"
DETECTION_RULES = REPO / "tests" / "detection_rules"
COLUMNS: Mapping[str, str] = {
    "CommandLine": "string",
    "Image": "string",
    "Port": "long",
    "Ip": "string",
    "Extra": "dynamic",
}


@pytest.fixture(scope="module")
def engine() -> Iterator[EventEngine]:
    engine = EventEngine()
    yield engine
    engine.close()


def _matches(engine: EventEngine, where: str, event: Mapping[str, Any]) -> bool:
    return bool(engine.matching(f"T | where {where}", table="T", columns=COLUMNS, events=[event]))


@pytest.mark.parametrize(
    ("where", "event", "expected", "source"),
    [
        # Strings are never null: an absent string is "", so isnull() is false, isempty() true.
        ("isnull(CommandLine)", {"Image": "x"}, False, f"{LEARN}/scalar-data-types/null-values"),
        ("isempty(CommandLine)", {"Image": "x"}, True, f"{LEARN}/isempty-function"),
        ("isnotempty(CommandLine)", {"CommandLine": "a"}, True, f"{LEARN}/isnotempty-function"),
        # Numbers can be null.
        ("isnull(Port)", {"Image": "x"}, True, f"{LEARN}/isnull-function"),
        ("Port > 1024", {"Image": "x"}, False, f"{LEARN}/scalar-data-types/null-values"),
        # contains, startswith, endswith, =~, in~ and has ignore case; _cs and == do not.
        (
            'CommandLine contains "TuNnEl"',
            {"CommandLine": "a tunnel b"},
            True,
            f"{LEARN}/contains-operator",
        ),
        (
            'CommandLine contains_cs "TUNNEL"',
            {"CommandLine": "a tunnel b"},
            False,
            f"{LEARN}/contains-cs-operator",
        ),
        (
            'CommandLine startswith "CLOUD"',
            {"CommandLine": "cloudflared"},
            True,
            f"{LEARN}/startswith-operator",
        ),
        (
            'Image endswith "\\\\CMD.EXE"',
            {"Image": "C:\\Windows\\cmd.exe"},
            True,
            f"{LEARN}/endswith-operator",
        ),
        ('Image =~ "CMD.EXE"', {"Image": "cmd.exe"}, True, f"{LEARN}/equals-operator"),
        ('Image == "CMD.EXE"', {"Image": "cmd.exe"}, False, f"{LEARN}/equals-cs-operator"),
        ('Image in~ ("A.EXE", "CMD.EXE")', {"Image": "cmd.exe"}, True, f"{LEARN}/in-operator"),
        # has looks for a whole term: runs of alphanumeric characters.
        (
            'CommandLine has "cloudflared"',
            {"CommandLine": "cloudflared.exe run"},
            True,
            f"{LEARN}/has-operator",
        ),
        (
            'CommandLine has "cloudflared"',
            {"CommandLine": "cloudflaredX run"},
            False,
            f"{LEARN}/has-operator",
        ),
        (
            'CommandLine has_all ("RUN", "tunnel")',
            {"CommandLine": "x tunnel run"},
            True,
            f"{LEARN}/has-all-operator",
        ),
        # matches regex: RE2, case-sensitive unless (?i), a search anywhere in the text.
        (
            'CommandLine matches regex "^CLOUD"',
            {"CommandLine": "cloudflared"},
            False,
            f"{LEARN}/re2",
        ),
        (
            'CommandLine matches regex "(?i)^CLOUD"',
            {"CommandLine": "cloudflared"},
            True,
            f"{LEARN}/re2",
        ),
        (
            'CommandLine matches regex "a.b"',
            {"CommandLine": "xxa-bxx"},
            True,
            f"{LEARN}/matches-regex-operator",
        ),
        ('CommandLine matches regex "\\\\d{3}"', {"CommandLine": "port 443"}, True, f"{LEARN}/re2"),
        # ipv4_is_in_range: inside, the last address of the range, outside, and not an address.
        (
            'ipv4_is_in_range(Ip, "10.0.0.0/8")',
            {"Ip": "10.20.30.40"},
            True,
            f"{LEARN}/ipv4-is-in-range-function",
        ),
        (
            'ipv4_is_in_range(Ip, "192.168.1.0/24")',
            {"Ip": "192.168.1.255"},
            True,
            f"{LEARN}/ipv4-is-in-range-function",
        ),
        (
            'ipv4_is_in_range(Ip, "192.168.1.0/24")',
            {"Ip": "192.168.2.1"},
            False,
            f"{LEARN}/ipv4-is-in-range-function",
        ),
        (
            'ipv4_is_in_range(Ip, "10.0.0.0/8")',
            {"Ip": "not an address"},
            False,
            f"{LEARN}/ipv4-is-in-range-function",
        ),
        (
            'ipv4_is_in_range(Ip, "10.0.0.0/8")',
            {"Image": "x"},
            False,
            f"{LEARN}/ipv4-is-in-range-function",
        ),
        # not() negates; numbers compare as numbers.
        ('not(CommandLine contains "a")', {"CommandLine": "b"}, True, f"{LEARN}/not-function"),
        ("Port >= 1024 and Port < 49152", {"Port": 8080}, True, f"{LEARN}/numerical-operators"),
        ("Port > 1024", {"Port": 443}, False, f"{LEARN}/numerical-operators"),
    ],
)
def test_the_engine_answers_as_kusto_documents(
    engine: EventEngine, where: str, event: Mapping[str, Any], expected: bool, source: str
) -> None:
    assert _matches(engine, where, event) is expected, source


def test_an_invalid_range_matches_nothing_as_kustos_null_does() -> None:
    assert kusto_compatible('T | where ipv4_is_in_range(Ip, "10.0.0/99")') == "T | where false"


def test_an_event_column_the_table_lacks_is_an_error_naming_it(engine: EventEngine) -> None:
    with pytest.raises(EngineError, match="CommandLin is not a column of T"):
        engine.matching("T | where true", table="T", columns=COLUMNS, events=[{"CommandLin": 1}])


def test_a_query_that_drops_the_rows_cannot_be_tested(engine: EventEngine) -> None:
    with pytest.raises(EngineError, match="does not return the table's rows"):
        engine.matching("T | count", table="T", columns=COLUMNS, events=[{"Image": "x"}])


def test_the_events_that_match_are_told_apart(engine: EventEngine) -> None:
    events = [{"Image": "a.exe"}, {"Image": "cmd.exe"}, {"Image": "CMD.EXE"}]
    query = 'T | where Image =~ "cmd.exe"'
    assert engine.matching(query, table="T", columns=COLUMNS, events=events) == (1, 2)


# --------------------------------------------------------------------------- the sidecar file


def _sidecar(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rule.tests.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_seed_rules_cases_are_three_matches_and_three_misses() -> None:
    cases = load_cases(cases_path(SEED_RULE)).cases
    assert [case.expect_match for case in cases] == [True] * 3 + [False] * 3
    assert cases[0].location.line == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases:\n  - name: a\n    expect: yes\n    event: {A: 1}\n", ":2: case 'a': `expect`"),
        ("cases:\n  - name: a\n    expect: match\n", ":2: case 'a': `event`"),
        ("cases:\n  - expect: match\n    event: {A: 1}\n", ":2: case 1 needs a `name`"),
        (
            "cases:\n  - name: a\n    expect: match\n    event: {A: 1}\n    evnt: {}\n",
            ":2: unknown key(s) evnt",
        ),
        (
            "cases:\n  - name: a\n    expect: match\n    event: {A: 1}\n"
            "  - name: a\n    expect: match\n    event: {A: 2}\n",
            ":2: case name 'a' is used twice",
        ),
        ("cases: [\n", ":2: not valid YAML"),
        ("- just a list\n", "expected a mapping with a `cases:` list"),
    ],
)
def test_a_bad_sidecar_names_its_file_line_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _sidecar(tmp_path, text)
    with pytest.raises(CasesError) as caught:
        load_cases(path)
    assert str(caught.value).startswith(str(path)), caught.value
    assert message in str(caught.value)


# --------------------------------------------------------------------------- whole rules


def test_every_documented_semantics_rule_passes_its_cases(tmp_path: Path) -> None:
    """tests/detection_rules: rules whose cases were written from Kusto's documentation."""
    engine = EventEngine()
    try:
        results = run_detection_tests(
            load_config(None, cwd=tmp_path),
            BuildRequest(paths=(DETECTION_RULES,)),
            engine=engine,
        )
    finally:
        engine.close()
    assert len(results) >= 10
    failures = [
        f"{r.path.name}: {r.errors or [(c.case.name, c.reason) for c in r.cases if not c.passed]}"
        for r in results
        if r.status != "passed"
    ]
    assert not failures, "\n".join(failures)
    assert sum(len(r.cases) for r in results) >= 40
