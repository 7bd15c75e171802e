"""deployer.kql against the real Kusto.Language (Node.js + @kusto/language-service-next)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer import kql
from deployer.errors import KqlServiceError, KqlUnavailableError
from deployer.kql import KqlDiagnostic, KqlLanguageService, kusto_type, unavailable_reason

# Probe with the module's own lookup (no process is started here) and skip with its message.
_REASON = unavailable_reason()
if _REASON is not None:
    pytest.skip(f"KQL validation unavailable: {_REASON}", allow_module_level=True)

ASIM = "asim"
OTHER = "other"
PROCESS_COLUMNS = {
    "TargetProcessCommandLine": "string",
    "TargetProcessName": "string",
    "TargetProcessId": "long",
    "TimeGenerated": "datetime",
    "EventCount": "int",
}
CLEAN = (
    "imProcessCreate\n"
    '| where (TargetProcessCommandLine contains " tunnel " '
    'and TargetProcessCommandLine contains " run ")'
)


@pytest.fixture(scope="module")
def service() -> Iterator[KqlLanguageService]:
    with KqlLanguageService() as svc:
        svc.define_schema(ASIM, {"imProcessCreate": PROCESS_COLUMNS})
        svc.define_schema(OTHER, {"DeviceProcessEvents": {"ProcessCommandLine": "string"}})
        yield svc


def codes(diagnostics: tuple[KqlDiagnostic, ...]) -> list[str]:
    return [d.code for d in diagnostics]


def test_clean_query_has_no_errors(service: KqlLanguageService) -> None:
    assert service.check(CLEAN, schema=ASIM) == ()


def test_unknown_column_is_named_with_its_position(service: KqlLanguageService) -> None:
    query = 'imProcessCreate\n| where TargetProcessFilename contains " run "'
    (error,) = service.check(query, schema=ASIM)
    assert error.code == "KS142"
    assert error.severity == "Error"
    assert "'TargetProcessFilename'" in error.message
    assert (error.line, error.column) == (2, 9)
    assert query[error.start : error.start + error.length] == "TargetProcessFilename"


def test_positions_count_code_points_and_crlf_lines(service: KqlLanguageService) -> None:
    # The emoji is two UTF-16 units in JavaScript but one character in Python.
    query = 'imProcessCreate\r\n| where TargetProcessName == "\U0001f600" or Nope == 1'
    (error,) = service.check(query, schema=ASIM)
    assert query[error.start : error.start + error.length] == "Nope"
    assert (error.line, error.column) == (2, 37)  # 38 if counted in UTF-16 units


@pytest.mark.parametrize(
    ("query", "code", "needle"),
    [
        ("imProcessCreat | take 1", "KS204", "'imProcessCreat'"),
        ("imProcessCreate | where tolowr(TargetProcessName) == 'x'", "KS211", "'tolowr'"),
        (
            "imProcessCreate | where TargetProcessId contains 5",
            "KS106",
            "'contains' is not defined for the operand types long and long",
        ),
        (
            'imProcessCreate | where TargetProcessId contains "5"',
            "KS106",
            "long and string",
        ),
        (
            "imProcessCreate | where TargetProcessName > datetime(2020-01-01)",
            "KS106",
            "string and datetime",
        ),
        # Sigma's "keywords" searches must not become bare string operands of `or`.
        ('imProcessCreate | where "a" or "b"', "KS106", "'or' is not defined"),
        ("imProcessCreate | where TargetProcessName", "KS141", "must have the type bool"),
    ],
)
def test_semantic_errors(service: KqlLanguageService, query: str, code: str, needle: str) -> None:
    errors = service.check(query, schema=ASIM)
    assert code in codes(errors)
    assert any(needle in e.message for e in errors), errors


def test_lenient_comparisons_kusto_language_accepts(service: KqlLanguageService) -> None:
    # Kusto.Language lets `==` and `in` compare across string and numbers; recorded here so a
    # change of behaviour in a new package version shows up.
    for where in ('TargetProcessId == "5"', "TargetProcessName == 5", 'EventCount in ("1")'):
        assert service.check(f"imProcessCreate | where {where}", schema=ASIM) == ()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ('imProcessCreate | where TargetProcessName contains "abc', "KS001"),
        ("imProcessCreate | where TargetProcessName contains", "KS006"),
        ('imProcessCreate | where TargetProcessName == "a" and', "KS006"),
        ('imProcessCreate | where (TargetProcessName == "a"', "KS005"),
        ('imProcessCreate | wher TargetProcessName == "a"', "KS176"),
    ],
)
def test_syntax_errors(service: KqlLanguageService, query: str, code: str) -> None:
    assert code in codes(service.check(query, schema=ASIM))


def test_invalid_escape_in_double_quoted_string(service: KqlLanguageService) -> None:
    query = 'imProcessCreate | where TargetProcessCommandLine contains ":\\*."'
    errors = service.check(query, schema=ASIM)
    assert errors
    assert errors[0].code == "KS001"
    assert errors[0].start == query.index("\\")
    # The same text as a verbatim string, or with the backslash escaped, is fine.
    fixed = ('@":\\*."', '":\\\\*."')
    for literal in fixed:
        ok = f"imProcessCreate | where TargetProcessCommandLine contains {literal}"
        assert service.check(ok, schema=ASIM) == ()


def test_schemas_are_separate(service: KqlLanguageService) -> None:
    assert service.check("DeviceProcessEvents | take 1", schema=OTHER) == ()
    assert codes(service.check("DeviceProcessEvents | take 1", schema=ASIM)) == ["KS204"]
    assert codes(service.check("imProcessCreate | take 1", schema=OTHER)) == ["KS204"]


def test_define_schema_is_idempotent_and_replaces(service: KqlLanguageService) -> None:
    service.define_schema("scratch", {"T": {"A": "string"}})
    service.define_schema("scratch", {"T": {"A": "string"}})
    assert codes(service.check("T | where B == 1", schema="scratch")) == ["KS142"]
    service.define_schema("scratch", {"T": {"A": "string", "B": "int"}})
    assert service.check("T | where B == 1", schema="scratch") == ()


def test_bad_requests_raise_value_error(service: KqlLanguageService) -> None:
    with pytest.raises(ValueError, match="unknown Kusto scalar type"):
        service.define_schema("bad", {"T": {"A": "IP Address"}})
    with pytest.raises(ValueError, match="not defined"):
        service.check("T", schema="never-defined")
    assert service.check(CLEAN, schema=ASIM) == ()  # the process is still fine


def test_analyzer_warnings_are_separate(service: KqlLanguageService) -> None:
    query = "imProcessCreate | join (imProcessCreate) on TargetProcessId"
    assert service.check(query, schema=ASIM) == ()
    result = service.check_detailed(query, schema=ASIM, analyzers=True)
    assert result.errors == ()
    assert [(w.code, w.severity) for w in result.warnings] == [("KS508", "Warning")]


def test_many_checks_share_one_process(service: KqlLanguageService) -> None:
    pid = service.pid
    before = _kql_children()
    bad = 'imProcessCreate | where Missing == "x"'
    first = (service.check(CLEAN, schema=ASIM), service.check(bad, schema=ASIM))
    assert first[0] == ()
    assert codes(first[1]) == ["KS142"]
    for _ in range(100):  # 200 more checks
        assert service.check(CLEAN, schema=ASIM) == first[0]
        assert service.check(bad, schema=ASIM) == first[1]
    assert service.pid == pid
    assert service.running
    if sys.platform.startswith("linux"):
        assert pid in before
        assert _kql_children() == before  # no process was started for the checks


def _kql_children() -> set[int]:
    """Pids of this process's children running kql_server.js (Linux /proc)."""
    if not sys.platform.startswith("linux"):
        return set()
    return {
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _ppid(p) == os.getpid() and b"kql_server.js" in _cmd(p)
    }


def _ppid(proc_dir: Path) -> int:
    try:
        stat = (proc_dir / "stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmd(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""


def _or_chain(terms: int, extra: str = "") -> str:
    chain = " or ".join(f'TargetProcessCommandLine contains "v{i}"' for i in range(terms))
    return f"imProcessCreate\n| where {chain}{extra}"


def test_thousand_term_or_chain(service: KqlLanguageService) -> None:
    # Observed with Kusto.Language 12.4.1: a flat chain of N `or` terms is a syntax tree
    # about N + 8 deep, and Kusto.Language skips semantic analysis of trees deeper than its
    # MaxAnalysisDepth (500 by default), reporting only KS245 "Query syntax depth exceeds
    # maximum safe limit. Semantic analysis not performed." at offset 0 (in ~0.1 s).
    # Parsing still runs, so syntax errors are still found; unknown columns are not.
    errors = service.check(_or_chain(1000, " or Missing == 1"), schema=ASIM)
    assert codes(errors) == ["KS245"]
    assert "depth exceeds maximum safe limit" in errors[0].message
    assert codes(service.check(_or_chain(450), schema=ASIM)) == []


def test_thousand_term_or_chain_with_raised_depth() -> None:
    # With the limit raised the chain is analyzed in full (about 1 s); somewhere below 3,000
    # terms the JavaScript stack overflows instead, which surfaces as KqlServiceError and
    # leaves the process usable.
    with KqlLanguageService(max_analysis_depth=10_000) as svc:
        svc.define_schema(ASIM, {"imProcessCreate": PROCESS_COLUMNS})
        assert svc.check(_or_chain(1000), schema=ASIM) == ()
        errors = svc.check(_or_chain(1000, " or Missing == 1"), schema=ASIM)
        assert codes(errors) == ["KS142"]
        assert "'Missing'" in errors[0].message
        with pytest.raises(KqlServiceError, match="stack"):
            svc.check(_or_chain(5000), schema=ASIM)
        assert svc.check(CLEAN, schema=ASIM) == ()


def test_missing_node_is_reported(tmp_path: Path) -> None:
    with pytest.raises(KqlUnavailableError) as info:
        KqlLanguageService(node=str(tmp_path / "no-such-node"))
    message = str(info.value)
    assert "\n" not in message
    assert "Node.js" in message
    assert "no-such-node" in message


@pytest.mark.skipif(os.name == "nt", reason="uses a POSIX shell script as a fake node")
def test_old_node_is_reported(tmp_path: Path) -> None:
    fake = tmp_path / "node"
    fake.write_text("#!/bin/sh\necho v18.19.1\n")
    fake.chmod(0o755)
    with pytest.raises(KqlUnavailableError, match=r"Node\.js v18\.19\.1 .* too old") as info:
        KqlLanguageService(node=str(fake))
    assert "\n" not in str(info.value)


def test_missing_package_is_reported(tmp_path: Path) -> None:
    with pytest.raises(KqlUnavailableError) as info:
        KqlLanguageService(package_root=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "@kusto/language-service-next not installed" in message
    assert "npm ci" in message


def test_package_root_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(kql.PACKAGE_ROOT_ENV, str(tmp_path))
    with pytest.raises(KqlUnavailableError, match=kql.PACKAGE_ROOT_ENV):
        KqlLanguageService()


def test_dead_process_and_closed_service_raise() -> None:
    svc = KqlLanguageService()
    try:
        svc.define_schema(ASIM, {"imProcessCreate": PROCESS_COLUMNS})
        os.kill(svc.pid, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        deadline = time.monotonic() + 10
        while svc.running and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(KqlServiceError, match="node pid"):
            svc.check(CLEAN, schema=ASIM)
    finally:
        svc.close()
    with pytest.raises(KqlServiceError, match="closed"):
        svc.check(CLEAN, schema=ASIM)


# --- kusto_type ----------------------------------------------------------------------------

KUSTO_TYPES = {"string", "int", "long", "real", "bool", "datetime", "dynamic", "guid", "timespan"}


def _shipped_data_types() -> set[str]:
    tables_modules = pytest.importorskip("sigma.pipelines.sentinelasim.tables")
    found: set[str] = set()
    schemas = [
        tables_modules.SENTINEL_ASIM_TABLES,
        tables_modules.SENTINEL_ASIM_COMMON_FIELDS,
        pytest.importorskip("sigma.pipelines.microsoftxdr.tables").MICROSOFT_XDR_TABLES,
        pytest.importorskip("sigma.pipelines.azuremonitor.tables").AZURE_MONITOR_TABLES,
    ]
    for schema in schemas:
        for columns in schema.values():
            found.update(str(info["data_type"]) for info in columns.values())
    return found


def test_every_shipped_data_type_is_in_the_table() -> None:
    shipped = _shipped_data_types()
    assert len(shipped) > 40
    assert shipped <= set(kql._KUSTO_TYPES), shipped - set(kql._KUSTO_TYPES)
    assert {kusto_type(raw) for raw in shipped} <= KUSTO_TYPES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("string", "string"),
        ("boolean", "bool"),
        ("Double", "real"),
        ("BigInt", "long"),
        ("Guid", "guid"),
        ("Integer", "int"),
        ("Long", "long"),
        ("Date/time", "datetime"),
        ("Latitude", "real"),
        ("IP Address", "string"),
        ("SHA521", "string"),
        ("", "string"),
        ("-", "string"),
        # case-insensitive fallback
        ("DATE/TIME", "datetime"),
        (" long ", "long"),
        ("ip_address", "string"),
        ("TIMESPAN", "timespan"),
        ("no such type", "string"),
    ],
)
def test_kusto_type(raw: str, expected: str) -> None:
    assert kusto_type(raw) == expected


def test_mapped_asim_schema_is_accepted(service: KqlLanguageService) -> None:
    tables = pytest.importorskip("sigma.pipelines.sentinelasim.tables")
    schema = {
        table: {
            **{
                c: kusto_type(i["data_type"])
                for c, i in tables.SENTINEL_ASIM_COMMON_FIELDS["COMMON"].items()
            },
            **{c: kusto_type(i["data_type"]) for c, i in columns.items()},
        }
        for table, columns in tables.SENTINEL_ASIM_TABLES.items()
    }
    service.define_schema("asim-full", schema)
    assert service.check(CLEAN, schema="asim-full") == ()
    assert (
        service.check(
            "imProcessCreate | where EventCount > 1 and EventStartTime > ago(1d)",
            schema="asim-full",
        )
        == ()
    )


def test_broken_package_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "node_modules" / "@kusto" / "language-service-next"
    package.mkdir(parents=True)
    for name in ("bridge.js", "Kusto.Language.Bridge.js"):
        (package / name).write_text("// empty\n")
    (package / "package.json").write_text('{"version": "0.0.0"}')
    with pytest.raises(KqlServiceError, match="failed to load"):
        KqlLanguageService(package_root=tmp_path)
