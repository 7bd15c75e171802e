"""The command line as a user runs it: `python -m deployer` in a project folder.

A subprocess, not typer's test runner: `deployer.cli.main` is what turns usage errors into
exit code 64, and the runner calls the typer app directly. Exit codes, from the README:
0 every rule built or validated, 1 a rule failed, 64 usage, 69 unavailable, 70 internal,
78 the config file is invalid.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import SEED_ID, SEED_QUERY_FILE, SEED_RULE, SEED_TESTS, rule_yaml

SEED_JSON = f"{SEED_ID}.json"
SEED_TITLE = "Cloudflared Tunnel Execution"
SCRIPT = Path(sys.executable).with_name("sentinel-deployer")


@dataclass(frozen=True)
class Run:
    """One finished CLI process; `log` is what a failing assertion shows."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def log(self) -> str:
        return (
            f"\n$ sentinel-deployer {' '.join(self.args)}\nexit code {self.code}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def summary(self) -> str:
        """The last stderr line: every command ends with its one line of counts."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""

    def blocks(self) -> dict[str, list[str]]:
        """Text output by rule file: its result line, then its indented problem lines."""
        found: dict[str, list[str]] = {}
        current: list[str] = []
        for line in self.stdout.splitlines():
            if line.startswith("  "):
                current.append(line)
            else:
                current = [line]
                found[line.split()[1]] = current
        return found


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    process = subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return Run(tuple(args), process.returncode, process.stdout, process.stderr)


def project(folder: Path, rules: dict[str, str], config: str | None = None) -> Path:
    """A project folder: rules/<name> for each rule and, if given, sentinel-deployer.toml."""
    for name, text in rules.items():
        path = folder / "rules" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if text == seed():
            # The seed rule travels with its detection tests, as in rules/.
            tests = path.with_name(path.stem + ".tests.yml")
            tests.write_text(SEED_TESTS.read_text(encoding="utf-8"), encoding="utf-8")
    if config is not None:
        (folder / "sentinel-deployer.toml").write_text(textwrap.dedent(config), encoding="utf-8")
    return folder


def seed() -> str:
    return SEED_RULE.read_text(encoding="utf-8")


def built(folder: Path) -> list[str]:
    out = folder / "build"
    return sorted(p.name for p in out.iterdir()) if out.is_dir() else []


def properties(path: Path) -> dict[str, Any]:
    """The alert rule's properties in a written template, as the file holds them."""
    document = json.loads(path.read_text(encoding="utf-8"))
    (resource,) = document["resources"]
    result: dict[str, Any] = resource["properties"]
    return result


# --- the seed rule ---------------------------------------------------------------------------


def test_build_writes_the_seed_rule_with_its_query_severity_and_attack_mapping(
    tmp_path: Path,
) -> None:
    project(tmp_path, {"seed.yml": seed()})

    run = cli(tmp_path, "build")

    assert run.code == 0, run.log
    assert built(tmp_path) == [SEED_JSON], run.log
    props = properties(tmp_path / "build" / SEED_JSON)
    assert props["query"] == SEED_QUERY_FILE.read_text(encoding="utf-8"), run.log
    assert props["displayName"] == SEED_TITLE, run.log
    assert props["severity"] == "Medium", run.log
    assert props["tactics"] == ["CommandAndControl"], run.log
    assert props["techniques"] == ["T1102", "T1090", "T1572"], run.log
    assert run.stdout.startswith(f"built    rules/seed.yml  {SEED_ID}  {SEED_TITLE}"), run.log
    assert run.summary == "1 rule: 1 built", run.log


# --- bad rules next to a good one ----------------------------------------------------------


def _long_values(count: int, width: int) -> str:
    return "".join(f"    - '{i:04d}{'x' * (width - 4)}'\n" for i in range(count))


# file name -> (rule text, what its error message must say)
BAD_RULES: dict[str, tuple[str, str]] = {
    "malformed.yml": (
        "title: Broken\nid: 22222222-2222-2222-2222-222222222222\n"
        "detection:\n  selection: [a, b\n  condition: selection\n",
        "not valid YAML",
    ),
    "no_id.yml": (
        rule_yaml(title="No Id").replace("id: 11111111-2222-3333-4444-555555555555\n", ""),
        "no `id`",
    ),
    "dup_a.yml": (
        rule_yaml(title="Dup A", rule_id="33333333-3333-3333-3333-333333333333"),
        "also used by",
    ),
    "dup_b.yml": (
        rule_yaml(title="Dup B", rule_id="33333333-3333-3333-3333-333333333333"),
        "also used by",
    ),
    "bad_tactic.yml": (
        rule_yaml(
            title="Bad Tactic",
            rule_id="44444444-4444-4444-4444-444444444444",
            tags="    - attack.not-a-tactic",
        ),
        "not an ATT&CK tactic",
    ),
    "bad_modifier.yml": (
        rule_yaml(
            title="Bad Modifier",
            rule_id="55555555-5555-5555-5555-555555555555",
            detection="selection:\n    CommandLine|nosuchmodifier: x\ncondition: selection",
        ),
        "nosuchmodifier",
    ),
    # 200 values of 60 characters: about 20,000 characters of KQL.
    "long_query.yml": (
        rule_yaml(
            title="Long Query",
            rule_id="66666666-6666-6666-6666-666666666666",
            detection="selection:\n  CommandLine|contains:\n"
            + _long_values(200, 60)
            + "condition: selection",
        ),
        "10,000",
    ),
    # The sentinel_asim pipeline maps LogonGuid to TargetUserSessionGuid, which the
    # imProcessCreate schema lacks, and every match needs it.
    "unknown_column.yml": (
        rule_yaml(
            title="Unknown Column",
            rule_id="77777777-7777-7777-7777-777777777777",
            detection="selection:\n    LogonGuid: '{x}'\ncondition: selection",
        ),
        "no column for LogonGuid (mapped to TargetUserSessionGuid)",
    ),
    # Converts, but Kusto.Language refuses it: DeviceProcessEvents.LogonId is a long, and a
    # regular expression needs a string.
    "kql_type.yml": (
        rule_yaml(
            title="KQL Type",
            rule_id="88888888-8888-8888-8888-888888888888",
            detection="selection:\n    LogonId|re: '^99'\ncondition: selection",
            extra="sentinel:\n  pipeline: microsoft_xdr\n",
        ),
        "KQL KS",
    ),
}
GOOD = {"good.yml": seed()}


def bad_project(folder: Path) -> Path:
    return project(folder, {**GOOD, **{name: text for name, (text, _) in BAD_RULES.items()}})


@pytest.fixture(scope="module")
def bad_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """One `build` over the good rule and every bad one."""
    folder = bad_project(tmp_path_factory.mktemp("bad-build"))
    return folder, cli(folder, "build")


def test_a_build_with_bad_rules_exits_1_and_still_builds_the_good_rule(
    bad_build: tuple[Path, Run],
) -> None:
    folder, run = bad_build
    assert run.code == 1, run.log
    assert built(folder) == [SEED_JSON], run.log
    assert "Traceback" not in run.output, run.log
    assert run.summary == f"{len(BAD_RULES) + 1} rules: 1 built, {len(BAD_RULES)} failed", run.log


@pytest.mark.parametrize("name", BAD_RULES)
def test_each_bad_rule_fails_with_its_own_reason_naming_the_file(
    bad_build: tuple[Path, Run], name: str
) -> None:
    _, run = bad_build
    _, reason = BAD_RULES[name]
    block = run.blocks().get(f"rules/{name}")

    assert block is not None, run.log
    assert block[0].startswith("failed "), run.log
    problems = block[1:]
    assert problems, run.log
    assert all(f"{name}" in line for line in problems), run.log
    assert any(reason in line for line in problems), run.log


def test_a_yaml_error_names_the_file_and_line(bad_build: tuple[Path, Run]) -> None:
    _, run = bad_build
    (problem,) = run.blocks()["rules/malformed.yml"][1:]
    assert re.match(r"  \S*malformed\.yml:\d+: error", problem), run.log


def test_duplicate_ids_name_the_other_file(bad_build: tuple[Path, Run]) -> None:
    _, run = bad_build
    blocks = run.blocks()
    assert "dup_b.yml" in " ".join(blocks["rules/dup_a.yml"][1:]), run.log
    assert "dup_a.yml" in " ".join(blocks["rules/dup_b.yml"][1:]), run.log


def test_validate_checks_the_same_and_writes_nothing(tmp_path: Path) -> None:
    bad_project(tmp_path)

    run = cli(tmp_path, "validate")

    assert run.code == 1, run.log
    assert not (tmp_path / "build").exists(), run.log
    blocks = run.blocks()
    assert blocks["rules/good.yml"][0].startswith("valid "), run.log
    assert all(blocks[f"rules/{name}"][0].startswith("failed ") for name in BAD_RULES), run.log
    assert run.summary == f"{len(BAD_RULES) + 1} rules: 1 valid, {len(BAD_RULES)} failed", run.log


def test_validate_of_good_rules_exits_0_and_writes_nothing(tmp_path: Path) -> None:
    project(tmp_path, GOOD)

    run = cli(tmp_path, "validate")

    assert run.code == 0, run.log
    assert not (tmp_path / "build").exists(), run.log
    assert run.summary == "1 rule: 1 valid", run.log


def test_json_output_is_one_object_per_rule_and_line(tmp_path: Path) -> None:
    bad_project(tmp_path)

    run = cli(tmp_path, "validate", "--format", "json")

    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert run.code == 1, run.log
    assert len(records) == len(BAD_RULES) + 1, run.log
    by_path = {record["path"]: record for record in records}
    assert set(by_path) == {f"rules/{name}" for name in (*GOOD, *BAD_RULES)}, run.log
    for record in records:
        assert {"path", "id", "title", "status", "errors"} <= set(record), run.log
    good = by_path["rules/good.yml"]
    assert (good["id"], good["title"], good["status"]) == (SEED_ID, SEED_TITLE, "valid"), run.log
    assert good["query"].startswith("imProcessCreate\n"), run.log
    assert good["errors"] == [], run.log
    for name, (_, reason) in BAD_RULES.items():
        record = by_path[f"rules/{name}"]
        assert record["status"] == "failed", run.log
        assert record["errors"], run.log
        assert all({"code", "message", "line"} <= set(e) for e in record["errors"]), run.log
        assert any(reason in e["message"] for e in record["errors"]), run.log
    assert by_path["rules/no_id.yml"]["id"] is None, run.log


# --- usage and config errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("build", "--nosuch"), "--nosuch"),
        (("build", "--pipeline", "nosuch"), "nosuch"),
        (("build", "--format", "xml"), "xml"),
        (("build", "does/not/exist"), "does/not/exist"),
        (("validate", "does/not/exist"), "does/not/exist"),
        (("build", "--env", "nosuch"), "no environment 'nosuch'"),
        (("build", "--config", "nosuch.toml"), "nosuch.toml"),
    ],
)
def test_usage_errors_exit_64_with_one_reason_and_write_nothing(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    project(tmp_path, GOOD)

    run = cli(tmp_path, *args)

    assert run.code == 64, run.log
    assert says in run.stderr, run.log
    assert "Traceback" not in run.output, run.log
    assert not (tmp_path / "build").exists(), run.log


def test_an_invalid_config_file_exits_78_with_one_line_per_field(tmp_path: Path) -> None:
    project(
        tmp_path,
        GOOD,
        config="""
        [defaults]
        query_frequency = "1 hour"
        nosuch = 1
        enabled = "yes"
        """,
    )

    run = cli(tmp_path, "build")

    assert run.code == 78, run.log
    assert not (tmp_path / "build").exists(), run.log
    assert "Traceback" not in run.output, run.log
    fields = ("defaults.query_frequency", "defaults.nosuch", "defaults.enabled")
    for name in fields:
        (line,) = [line for line in run.stderr.splitlines() if f"{name}:" in line]
        assert "sentinel-deployer.toml" in line, run.log
        assert not any(f"{other}:" in line for other in fields if other != name), run.log
    assert "'1 hour'" in run.stderr, run.log


# --- pipelines and environments -------------------------------------------------------------


def _with_id(text: str, rule_id: str, title: str) -> str:
    text = re.sub(r"(?m)^id: .*$", f"id: {rule_id}", text)
    return re.sub(r"(?m)^title: .*$", f"title: {title}", text)


AZ_ID = "aaaaaaaa-0000-4000-8000-000000000001"
AZ_RULE = _with_id(seed(), AZ_ID, "Tunnel On Azure Monitor") + (
    "sentinel:\n  pipeline: azure_monitor\n"
)


def test_a_rules_own_pipeline_picks_its_table(tmp_path: Path) -> None:
    project(tmp_path, {**GOOD, "az.yml": AZ_RULE})

    run = cli(tmp_path, "build")

    assert run.code == 0, run.log
    seed_query = properties(tmp_path / "build" / SEED_JSON)["query"]
    az_query = properties(tmp_path / "build" / f"{AZ_ID}.json")["query"]
    assert seed_query.startswith("imProcessCreate\n"), run.log
    assert az_query.startswith("SecurityEvent\n"), run.log


def test_the_pipeline_option_beats_the_rules_own(tmp_path: Path) -> None:
    project(tmp_path, {**GOOD, "az.yml": AZ_RULE})

    run = cli(tmp_path, "build", "--pipeline", "microsoft_xdr")

    assert run.code == 0, run.log
    for name in (SEED_JSON, f"{AZ_ID}.json"):
        query = properties(tmp_path / "build" / name)["query"]
        assert query.startswith("DeviceProcessEvents\n"), run.log


def test_an_environments_overrides_apply_and_only_arm_expressions_are_escaped(
    tmp_path: Path,
) -> None:
    beta_id = "bbbbbbbb-0000-4000-8000-000000000002"
    project(
        tmp_path,
        {**GOOD, "beta.yml": _with_id(seed(), beta_id, "Tunnel [beta]")},
        config="""
        [environments.prod]
        emulator = true
        overrides = {enabled = false, display_name_prefix = "[PROD] "}
        """,
    )

    run = cli(tmp_path, "build", "--env", "prod")

    assert run.code == 0, run.log
    seed_path, beta_path = (tmp_path / "build" / f"{i}.json" for i in (SEED_ID, beta_id))
    assert properties(seed_path)["enabled"] is False, run.log
    assert properties(beta_path)["enabled"] is False, run.log
    # ARM evaluates a string that starts with "[" and ends with "]"; any other is literal text.
    assert properties(seed_path)["displayName"] == f"[PROD] {SEED_TITLE}", run.log
    # "[PROD] Tunnel [beta]" would be an expression: "[[" makes ARM read it as literal text.
    assert properties(beta_path)["displayName"] == "[[PROD] Tunnel [beta]", run.log
    raw = beta_path.read_text(encoding="utf-8")
    assert '"displayName": "[[PROD] Tunnel [beta]"' in raw, run.log


# --- without Node.js ------------------------------------------------------------------------


def test_without_node_the_build_stops_with_69_unless_kql_is_skipped(tmp_path: Path) -> None:
    project(tmp_path, GOOD)
    no_node = {"SENTINEL_DEPLOYER_NODE": "/nonexistent/node"}

    stopped = cli(tmp_path, "build", env=no_node)

    assert stopped.code == 69, stopped.log
    assert "Traceback" not in stopped.output, stopped.log
    assert len([line for line in stopped.stderr.splitlines() if "Node.js" in line]) == 1, (
        stopped.log
    )
    assert "--skip-kql" in stopped.stderr, stopped.log
    assert not (tmp_path / "build").exists(), stopped.log

    skipped = cli(tmp_path, "build", "--skip-kql", env=no_node)

    assert skipped.code == 0, skipped.log
    assert built(tmp_path) == [SEED_JSON], skipped.log
    assert "KQL is not checked" in skipped.stderr, skipped.log
    assert skipped.summary == "1 rule: 1 built", skipped.log


# --- the build folder -------------------------------------------------------------------------


def test_building_twice_gives_byte_identical_files(tmp_path: Path) -> None:
    project(tmp_path, {**GOOD, "az.yml": AZ_RULE})

    first = cli(tmp_path, "build")
    before = {p.name: p.read_bytes() for p in (tmp_path / "build").iterdir()}
    second = cli(tmp_path, "build")
    after = {p.name: p.read_bytes() for p in (tmp_path / "build").iterdir()}

    assert first.code == second.code == 0, first.log + second.log
    assert len(before) == 2, first.log
    assert after == before, second.log


def test_a_full_build_removes_the_templates_of_removed_rules_and_nothing_else(
    tmp_path: Path,
) -> None:
    project(tmp_path, {**GOOD, "az.yml": AZ_RULE})
    first = cli(tmp_path, "build")
    assert built(tmp_path) == sorted([SEED_JSON, f"{AZ_ID}.json"]), first.log
    (tmp_path / "build" / "notes.txt").write_text("kept", encoding="utf-8")
    (tmp_path / "rules" / "az.yml").unlink()

    # A build of named files leaves the rest of build/ alone ...
    partial = cli(tmp_path, "build", "rules/good.yml")
    assert partial.code == 0, partial.log
    assert f"{AZ_ID}.json" in built(tmp_path), partial.log

    # ... a build of the whole rules folder removes templates no rule builds any more.
    full = cli(tmp_path, "build")
    assert full.code == 0, full.log
    assert built(tmp_path) == sorted([SEED_JSON, "notes.txt"]), full.log


# --- --debug and --help -----------------------------------------------------------------------


def _broken_templates(folder: Path) -> Path:
    (folder / "empty-templates").mkdir()
    return project(folder, GOOD, config='[project]\ntemplates = "empty-templates"\n')


def test_debug_adds_the_traceback_that_is_otherwise_hidden(tmp_path: Path) -> None:
    _broken_templates(tmp_path)

    plain = cli(tmp_path, "build")
    debug = cli(tmp_path, "build", "--debug")

    assert plain.code != 0, plain.log
    assert debug.code == plain.code, debug.log
    assert "Traceback" not in plain.output, plain.log
    (error,) = [line for line in plain.stderr.splitlines() if line.startswith("error:")]
    assert "scheduled-rule.json.j2" in error, plain.log
    assert "Traceback" in debug.stderr, debug.log
    assert error in debug.stderr.splitlines(), debug.log
    assert len(debug.stderr) > len(plain.stderr), debug.log


def test_a_templates_folder_without_the_template_is_a_config_error(tmp_path: Path) -> None:
    # `[project] templates` names a folder that lacks scheduled-rule.json.j2: no rule failed,
    # the config file is unusable, which the README's table gives 78 (1 means "at least one
    # rule failed; the others were still built").
    _broken_templates(tmp_path)

    run = cli(tmp_path, "build")

    assert run.code == 78, run.log


@pytest.mark.parametrize("command", ["module", "script"])
def test_help_lists_the_commands(tmp_path: Path, command: str) -> None:
    if command == "script":
        if not SCRIPT.is_file():
            pytest.skip(f"no console script at {SCRIPT}")
        args = [str(SCRIPT), "--help"]
    else:
        args = [sys.executable, "-m", "deployer", "--help"]

    process = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )

    shown = f"exit code {process.returncode}\n{process.stdout}{process.stderr}"
    assert process.returncode == 0, shown
    for name in ("build", "validate", "test", "plan", "deploy", "export", "emulator"):
        assert re.search(rf"(?m)^\W*{name}\s", process.stdout), shown


# --------------------------------------------------------------------------- detection tests


def test_the_seed_rules_detection_tests_pass(tmp_path: Path) -> None:
    project(tmp_path, {"seed.yml": seed()})
    run = cli(tmp_path, "test")
    assert run.code == 0, run.log
    assert run.stdout.startswith("passed   rules/seed.yml"), run.log
    assert run.stderr.strip().endswith("1 rule: 1 passed; 6 cases: 6 passed, 0 failed"), run.log


def test_a_changed_operator_fails_naming_the_case_and_the_event(tmp_path: Path) -> None:
    project(tmp_path, {"seed.yml": seed()})
    rule = tmp_path / "rules" / "seed.yml"
    # The options list's `contains` becomes `endswith`: no tunnel command line ends with one.
    assert seed().count("CommandLine|contains:\n") == 1
    rule.write_text(
        seed().replace("CommandLine|contains:\n", "CommandLine|endswith:\n"), encoding="utf-8"
    )
    run = cli(tmp_path, "test")
    assert run.code == 1, run.log
    assert "case 'tunnel run with a token': expected a match, the query returned nothing" in (
        run.stdout
    ), run.log
    assert '    event: {"TargetProcessName": "C:\\\\Users\\\\Public' in run.stdout, run.log
    assert "3 of 6 cases failed" in run.stdout, run.log


def test_a_rule_without_tests_is_a_warning_or_with_require_tests_an_error(
    tmp_path: Path,
) -> None:
    project(tmp_path, {"other.yml": rule_yaml()})
    run = cli(tmp_path, "validate", "--skip-kql")
    assert run.code == 0 and "no detection tests: add other.tests.yml" in run.stdout, run.log
    (tmp_path / "sentinel-deployer.toml").write_text(
        "[project]\nrequire_tests = true\n", encoding="utf-8"
    )
    run = cli(tmp_path, "validate", "--skip-kql")
    assert run.code == 1 and "error [Test Rule]: no detection tests" in run.stdout, run.log
    assert cli(tmp_path, "test").code == 1
