"""Plan and deploy end to end: the CLI and the real Azure SDK over HTTPS against the emulator.

Each test starts a local workspace emulator and points an environment at it the way a user
points one at Azure (`arm_endpoint`, `credential = "token"`, the CA in REQUESTS_CA_BUNDLE), so
the code under test is the code that talks to a real workspace; nothing of ours is patched.
The emulator's request log and stored rules are the evidence.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from test_cli import Run, cli

from deployer.apply import apply_plan
from deployer.config import load_config
from deployer.deployment import open_workspaces, plan_environment, select_environments
from deployer.emulator import Emulator, Faults

from conftest import SEED_ID, SEED_RULE, SEED_TESTS, SHARED, rule_yaml

SUB = "6f1d2c3b-0a9e-4d8c-b7a6-1e2f3a4b5c6d"
RG = "rg-soc"
WS = "law-soc"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOi.test-token-that-must-never-be-printed"
PROJECT = "acme-detections"
SEED_QUERY = SHARED / "seed/expected-sentinel_asim.kql"


class Reachable(Protocol):
    """An emulator as a project sees it: where it listens and which CA to trust."""

    @property
    def url(self) -> str: ...
    @property
    def ca_path(self) -> Path: ...


def write_project(root: Path, emulator: Reachable, *, extra: str = "", seed: bool = True) -> Path:
    """A project folder with one environment, `lab`, on the emulator as if it were Azure."""
    rules = root / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    if seed:
        shutil.copy(SEED_RULE, rules / SEED_RULE.name)
        shutil.copy(SEED_TESTS, rules / SEED_TESTS.name)
    (root / "sentinel-deployer.toml").write_text(
        f'[project]\nname = "{PROJECT}"\n\n'
        "[environments.lab]\n"
        f'subscription_id = "{SUB}"\nresource_group = "{RG}"\nworkspace = "{WS}"\n'
        f'arm_endpoint = "{emulator.url}"\ncredential = "token"\n{extra}',
        encoding="utf-8",
    )
    return root


def run(root: Path, emulator: Reachable, *args: str) -> Run:
    """The CLI in `root`, trusting the emulator's CA as a user would trust a proxy's."""
    env = {
        "SENTINEL_DEPLOYER_TOKEN": TOKEN,
        "REQUESTS_CA_BUNDLE": str(emulator.ca_path),
        "NO_COLOR": "1",
    }
    return cli(root, *args, env=env)


def workspace_rules(emulator: Emulator) -> dict[str, dict[str, Any]]:
    return emulator.rules(SUB, RG, WS)


def methods(emulator: Emulator) -> Counter[str]:
    return Counter(request.method for request in emulator.requests)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


@pytest.fixture
def deployed(tmp_path: Path, emulator: Emulator) -> Path:
    """A project whose seed rule is already deployed to `lab`."""
    root = write_project(tmp_path, emulator)
    result = run(root, emulator, "deploy", "--auto-approve", "--skip-kql")
    assert result.code == 0, result.log
    emulator.clear_log()
    return root


def portal_edit(emulator: Emulator, rule: str, **changes: Any) -> None:
    """Change a stored rule as someone in the portal would: same rule, new etag."""
    stored = copy.deepcopy(workspace_rules(emulator)[rule])
    stored["properties"].update(changes)
    emulator.put_raw(SUB, RG, WS, rule, stored)


# --- the seed rule, from an empty workspace to no changes ------------------------------------


def test_the_seed_rule_is_planned_created_and_then_left_alone(
    tmp_path: Path, emulator: Emulator
) -> None:
    root = write_project(tmp_path, emulator)

    first = run(root, emulator, "plan", "--detailed-exitcode")
    assert first.code == 2, first.log
    assert f"+ create    Cloudflared Tunnel Execution  ({SEED_ID})" in first.stdout
    assert methods(emulator) == Counter({"GET": 1}), "a plan is one paged list, nothing else"

    deploy = run(root, emulator, "deploy", "--auto-approve")
    assert deploy.code == 0, deploy.log
    assert f"created   Cloudflared Tunnel Execution  ({SEED_ID})" in deploy.stdout
    stored = workspace_rules(emulator)[SEED_ID]["properties"]
    # The reference query lives in ../shared, which a clone may not have (as in test_cli).
    if SEED_QUERY.is_file():
        assert stored["query"] == SEED_QUERY.read_text(encoding="utf-8")
    assert stored["query"].startswith("imProcessCreate\n| where ") and " tunnel " in stored["query"]
    assert stored["severity"] == "Medium"
    assert stored["tactics"] == ["CommandAndControl"]
    assert sorted(stored["techniques"]) == ["T1090", "T1102", "T1572"]
    assert f"project: {PROJECT}, environment: lab" in stored["description"]

    again = run(root, emulator, "plan", "--detailed-exitcode")
    assert again.code == 0, again.log
    assert "no changes" in again.stdout

    emulator.clear_log()
    second = run(root, emulator, "deploy", "--auto-approve")
    assert second.code == 0, second.log
    assert methods(emulator) == Counter({"GET": 1}), emulator.requests
    assert "1 unchanged" in second.summary


def test_durations_in_another_spelling_and_server_defaults_are_no_change(tmp_path: Path) -> None:
    with Emulator(duration_style="alternate") as emulator:
        root = write_project(tmp_path, emulator)
        assert run(root, emulator, "deploy", "--auto-approve", "--skip-kql").code == 0
        listed = json.loads(run(root, emulator, "plan", "--format", "json", "--skip-kql").stdout)
        assert [c["action"] for c in listed["changes"]] == ["unchanged"], listed
        # The emulator really did answer in other words: PT1H as PT60M, a null default.
        assert emulator.rules(SUB, RG, WS)[SEED_ID]["properties"]["queryFrequency"] == "PT1H"
        assert run(root, emulator, "plan", "--detailed-exitcode", "--skip-kql").code == 0


def test_a_changed_rule_is_an_update_with_a_field_diff_and_one_put(
    deployed: Path, emulator: Emulator
) -> None:
    rule = deployed / "rules" / SEED_RULE.name
    rule.write_text(rule.read_text().replace("level: medium", "level: high"), encoding="utf-8")

    planned = run(deployed, emulator, "plan", "--detailed-exitcode", "--skip-kql")
    assert planned.code == 2, planned.log
    assert "~ update" in planned.stdout
    assert "severity: Medium -> High" in planned.stdout

    result = run(deployed, emulator, "deploy", "--auto-approve", "--skip-kql")
    assert result.code == 0, result.log
    assert methods(emulator) == Counter({"GET": 2, "PUT": 1})
    assert workspace_rules(emulator)[SEED_ID]["properties"]["severity"] == "High"


# --- nobody's edits are lost -----------------------------------------------------------------


def test_a_rule_edited_between_plan_and_apply_is_refused(
    deployed: Path, emulator: Emulator
) -> None:
    rule = deployed / "rules" / SEED_RULE.name
    rule.write_text(rule.read_text().replace("level: medium", "level: high"), encoding="utf-8")
    saved = deployed / "plan.json"
    assert run(deployed, emulator, "plan", "--out", str(saved), "--skip-kql").code == 0
    portal_edit(emulator, SEED_ID, severity="Low")

    result = run(deployed, emulator, "deploy", "--plan", str(saved), "--auto-approve")

    assert result.code == 1, result.log
    assert "refused" in result.stdout
    assert "changed in the workspace after the plan was made" in result.stdout
    assert workspace_rules(emulator)[SEED_ID]["properties"]["severity"] == "Low"


def test_a_saved_plan_is_refused_whole_when_the_rules_changed_since(
    deployed: Path, emulator: Emulator
) -> None:
    saved = deployed / "plan.json"
    assert run(deployed, emulator, "plan", "--out", str(saved), "--skip-kql").code == 0
    rule = deployed / "rules" / SEED_RULE.name
    rule.write_text(rule.read_text().replace("level: medium", "level: low"), encoding="utf-8")

    result = run(deployed, emulator, "deploy", "--plan", str(saved), "--auto-approve")

    assert result.code == 64, result.log
    assert "changed since this plan was made" in result.stderr
    assert "PUT" not in methods(emulator)


def test_a_portal_edit_is_drift_and_is_overwritten_only_when_asked(
    deployed: Path, emulator: Emulator
) -> None:
    portal_edit(emulator, SEED_ID, queryFrequency="PT5M")

    planned = run(deployed, emulator, "plan", "--detailed-exitcode", "--skip-kql")
    assert planned.code == 2, planned.log
    assert "! drift" in planned.stdout
    assert "queryFrequency: PT5M -> PT1H" in planned.stdout

    kept = run(deployed, emulator, "deploy", "--auto-approve", "--skip-kql")
    assert kept.code == 1, kept.log
    assert "--overwrite-drift" in kept.stdout
    assert workspace_rules(emulator)[SEED_ID]["properties"]["queryFrequency"] == "PT5M"

    args = ("deploy", "--auto-approve", "--skip-kql", "--overwrite-drift")
    replaced = run(deployed, emulator, *args)
    assert replaced.code == 0, replaced.log
    assert workspace_rules(emulator)[SEED_ID]["properties"]["queryFrequency"] == "PT1H"


def test_prune_deletes_only_this_projects_rules(deployed: Path, emulator: Emulator) -> None:
    ours = workspace_rules(emulator)[SEED_ID]
    portal = copy.deepcopy(ours)
    portal["properties"]["displayName"] = "Made in the portal"
    portal["properties"]["description"] = "Written by an analyst."
    emulator.put_raw(SUB, RG, WS, "portal-rule", portal)
    other = copy.deepcopy(ours)
    other["properties"]["description"] = ours["properties"]["description"].replace(
        f"project: {PROJECT}", "project: someone-else"
    )
    emulator.put_raw(SUB, RG, WS, "other-project-rule", other)
    (deployed / "rules" / SEED_RULE.name).unlink()
    (deployed / "rules" / SEED_TESTS.name).unlink()

    without = run(deployed, emulator, "plan", "--skip-kql")
    assert "? orphan" in without.stdout, without.log
    assert "- delete" not in without.stdout

    result = run(deployed, emulator, "deploy", "--prune", "--auto-approve", "--skip-kql")

    assert result.code == 0, result.log
    assert set(workspace_rules(emulator)) == {"portal-rule", "other-project-rule"}
    assert f"deleted   Cloudflared Tunnel Execution  ({SEED_ID})" in result.stdout


def test_a_rule_excluded_from_an_environment_is_deleted_there_under_prune(
    tmp_path: Path, emulator: Emulator
) -> None:
    root = write_project(tmp_path, emulator)
    assert run(root, emulator, "deploy", "--auto-approve", "--skip-kql").code == 0
    write_project(tmp_path, emulator, extra=f'exclude = ["{SEED_ID}"]\n')

    result = run(root, emulator, "deploy", "--prune", "--auto-approve", "--skip-kql")

    assert result.code == 0, result.log
    assert workspace_rules(emulator) == {}


# --- faults on the wire ----------------------------------------------------------------------


def _many_rules(root: Path, count: int) -> None:
    rules = root / "rules"
    for index in range(count):
        rule_id = str(uuid.UUID(int=index + 1))
        text = rule_yaml(
            title=f"Bulk rule {index:03d}",
            rule_id=rule_id,
            detection=f"selection:\n    CommandLine|contains: 'bulk-{index}'\ncondition: selection",
        )
        (rules / f"bulk_{index:03d}.yml").write_text(text, encoding="utf-8")


def test_two_hundred_rules_land_exactly_once_through_429s_503s_and_dropped_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(rate_429=0.10, rate_503=0.05, rate_drop=0.02, retry_after_s=1, seed=3)
    with Emulator(faults=faults) as emulator:
        root = write_project(tmp_path, emulator, seed=False)
        _many_rules(root, 200)
        monkeypatch.setenv("SENTINEL_DEPLOYER_TOKEN", TOKEN)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_path))
        config = load_config(root / "sentinel-deployer.toml", cwd=root)
        environments = select_environments(config, ["lab"], all_envs=False)

        with open_workspaces(config, environments) as [(target, workspace)]:
            planned = plan_environment(config, target, workspace, prune=False, queries=None)
            assert planned.plan is not None
            assert planned.plan.counts() == Counter({"create": 200})
            ledger = apply_plan(planned.plan, workspace, concurrency=8)

            stored = workspace_rules(emulator)
            assert len(stored) == 200
            assert Counter(entry.outcome for entry in ledger) == Counter({"created": 200}), [
                entry for entry in ledger if entry.outcome != "created"
            ]
            wanted = {c.rule_id: c.body for c in planned.plan.changes}
            for entry in ledger:
                assert (
                    stored[entry.rule_id]["properties"]["query"]
                    == (wanted[entry.rule_id] or {})["properties"]["query"]
                )
            statuses = Counter((r.method, r.status) for r in emulator.requests)
            assert statuses[("PUT", 429)] + statuses[("PUT", 503)] > 0, statuses

            emulator.faults = Faults()
            after = plan_environment(config, target, workspace, prune=False, queries=None)
            assert after.plan is not None
            assert after.plan.counts() == Counter({"unchanged": 200})


@pytest.mark.parametrize("applied", [True, False], ids=["write-landed", "write-lost"])
def test_a_write_whose_answer_is_lost_is_read_back_before_the_ledger_says_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    # Every PUT's connection drops; with `applied` the write lands first, else it never does.
    faults = Faults(rate_drop=1.0, drop_after_write=1.0 if applied else 0.0)
    faults.methods = frozenset({"PUT"})
    with Emulator(faults=faults) as emulator:
        root = write_project(tmp_path, emulator)
        monkeypatch.setenv("SENTINEL_DEPLOYER_TOKEN", TOKEN)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_path))
        config = load_config(root / "sentinel-deployer.toml", cwd=root)
        with open_workspaces(config, select_environments(config, [], False)) as opened:
            [(target, workspace)] = opened
            planned = plan_environment(config, target, workspace, prune=False, queries=None)
            assert planned.plan is not None
            [entry] = apply_plan(planned.plan, workspace)

        puts = [r for r in emulator.requests if r.method == "PUT"]
        if applied:
            assert entry.outcome == "created"
            assert len(puts) == 1, "the write landed: read back, never sent again"
            assert SEED_ID in workspace_rules(emulator)
        else:
            assert entry.outcome == "failed"
            assert "no answer" in (entry.message or "")
            assert len(puts) == 5, "read back after each loss, then sent again"
            assert workspace_rules(emulator) == {}
        assert all(r.status == 0 for r in puts)


# --- errors from Azure: one line each --------------------------------------------------------


def _one_clean_line(result: Run, *needles: str) -> None:
    assert "Traceback" not in result.output, result.log
    lines = [line for line in result.output.splitlines() if all(n in line for n in needles)]
    assert len(lines) == 1, result.log


def test_a_rejected_token_is_one_line_saying_to_sign_in(tmp_path: Path) -> None:
    with Emulator(accepted_token="a-different-token") as emulator:
        root = write_project(tmp_path, emulator)
        result = run(root, emulator, "plan", "--skip-kql")
    assert result.code == 1, result.log
    _one_clean_line(result, "HTTP 401 InvalidAuthenticationToken", "sign in again")


def test_a_missing_role_is_named(tmp_path: Path) -> None:
    with Emulator(read_only=True) as emulator:
        root = write_project(tmp_path, emulator)
        result = run(root, emulator, "deploy", "--auto-approve", "--skip-kql")
    assert result.code == 1, result.log
    _one_clean_line(result, "HTTP 403 AuthorizationFailed", "Microsoft Sentinel Contributor")
    assert "failed    Cloudflared Tunnel Execution" in result.stdout


def test_a_missing_workspace_names_what_to_check(tmp_path: Path) -> None:
    with Emulator(workspaces={(SUB, RG, "law-elsewhere")}) as emulator:
        root = write_project(tmp_path, emulator)
        result = run(root, emulator, "plan", "--skip-kql")
    assert result.code == 1, result.log
    _one_clean_line(result, "HTTP 404 ResourceNotFound", "check subscription_id")


def test_the_services_own_message_is_passed_on_for_a_400(tmp_path: Path) -> None:
    with Emulator() as emulator:
        body = {"kind": "Scheduled", "properties": {"enabled": True, "displayName": "x"}}
        for index in range(512):
            emulator.put_raw(SUB, RG, WS, f"enabled-{index}", body)
        root = write_project(tmp_path, emulator)
        result = run(root, emulator, "deploy", "--auto-approve", "--skip-kql")
    assert result.code == 1, result.log
    _one_clean_line(result, "HTTP 400 BadRequest", "the limit is 512 per workspace")


# --- secrets ---------------------------------------------------------------------------------


def test_the_token_appears_in_no_output_log_or_saved_plan(
    tmp_path: Path, emulator: Emulator
) -> None:
    root = write_project(tmp_path, emulator)
    saved = root / "plan.json"
    runs = [
        run(root, emulator, "plan", "--debug", "--out", str(saved), "--format", "json"),
        run(root, emulator, "deploy", "--debug", "--auto-approve", "--skip-kql"),
    ]
    with Emulator(accepted_token="other") as refusing:
        write_project(tmp_path, refusing)
        runs.append(run(root, refusing, "deploy", "--debug", "--auto-approve", "--skip-kql"))
    for result in runs:
        assert TOKEN not in result.output, result.log
        assert TOKEN.rsplit(".", maxsplit=1)[-1] not in result.output
    assert runs[0].code == 0 and runs[1].code == 0 and runs[2].code == 1
    assert TOKEN not in saved.read_text(encoding="utf-8")


# --- adopting a workspace: export, then plan -------------------------------------------------


def _made_elsewhere(emulator: Emulator) -> None:
    """Two rules an analyst made in the portal, in the service's own spellings."""
    emulator.put_raw(
        SUB,
        RG,
        WS,
        "5b1f0a42-7c4e-4d1a-9a3b-2f6c8d9e0a11",
        {
            "kind": "Scheduled",
            "properties": {
                "displayName": "[SOC] New local admin",
                "description": "[internal] Raised when a user joins the local administrators.",
                "severity": "High",
                "enabled": True,
                "query": "SecurityEvent\r\n| where EventID == 4732\r\n| extend Host = Computer",
                "queryFrequency": "PT60M",
                "queryPeriod": "P1D",
                "triggerOperator": "GreaterThan",
                "triggerThreshold": 0,
                "suppressionDuration": "PT5H",
                "suppressionEnabled": False,
                "tactics": ["Persistence", "PrivilegeEscalation"],
                "techniques": ["T1098"],
                "alertRuleTemplateName": None,
                "entityMappings": [
                    {
                        "entityType": "Host",
                        "fieldMappings": [{"identifier": "HostName", "columnName": "Host"}],
                    }
                ],
            },
        },
    )
    emulator.put_raw(
        SUB,
        RG,
        WS,
        "0c2d4e6f-1a3b-4c5d-8e9f-a0b1c2d3e4f5",
        {
            "kind": "Scheduled",
            "properties": {
                "displayName": "Many failed sign-ins",
                "severity": "Low",
                "enabled": False,
                "query": "SigninLogs | where ResultType != 0 | summarize n = count() by UserId",
                "queryFrequency": "PT5M",
                "queryPeriod": "PT5M",
                "triggerOperator": "GreaterThan",
                "triggerThreshold": 10,
                "suppressionDuration": "PT1H",
                "suppressionEnabled": True,
                "tactics": ["CredentialAccess"],
                "techniques": [],
            },
        },
    )


def test_export_then_plan_shows_only_ownership_to_take(deployed: Path, emulator: Emulator) -> None:
    _made_elsewhere(emulator)
    before = workspace_rules(emulator)

    exported = run(deployed, emulator, "export")
    assert exported.code == 0, exported.log
    assert "skipped   Cloudflared Tunnel Execution" in exported.stdout, "ours stays in Sigma"
    files = sorted((deployed / "rules" / "exported").glob("*.arm.json"))
    assert [f.name.split(".")[0] for f in files] == sorted(
        name for name in before if name != SEED_ID
    )
    # Rule text stays text: a leading "[" ... "]" is written as ARM's literal "[[".
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    assert '"displayName": "[[SOC] New local admin"' not in text  # ends without "]"
    assert '"description": "[internal] Raised' in text

    planned = run(deployed, emulator, "plan", "--format", "json", "--detailed-exitcode")
    assert planned.code == 2, planned.log
    changes = {c["rule_id"]: c for c in json.loads(planned.stdout)["changes"]}
    assert {c["action"] for i, c in changes.items() if i != SEED_ID} == {"adopt"}, changes
    assert all(c["fields"] == [] for c in changes.values()), changes

    adopted = run(deployed, emulator, "deploy", "--auto-approve")
    assert adopted.code == 0, adopted.log
    after = workspace_rules(emulator)
    for name, rule in before.items():
        if name == SEED_ID:
            continue
        properties = after[name]["properties"]
        assert f"project: {PROJECT}, environment: lab" in properties["description"]
        assert properties["query"] == rule["properties"]["query"]
        assert properties["severity"] == rule["properties"]["severity"]
    assert run(deployed, emulator, "plan", "--detailed-exitcode").code == 0


def test_a_native_rule_file_deploys_its_own_kql(tmp_path: Path, emulator: Emulator) -> None:
    _made_elsewhere(emulator)
    other = tmp_path / "elsewhere"
    other.mkdir()
    write_project(other, emulator, seed=False)
    assert run(other, emulator, "export", "--out", "rules").code == 0
    with Emulator() as empty:
        write_project(other, empty, seed=False)
        result = run(other, empty, "deploy", "--auto-approve")
        assert result.code == 0, result.log
        stored = empty.rules(SUB, RG, WS)
    assert {r["properties"]["displayName"] for r in stored.values()} == {
        "[SOC] New local admin",
        "Many failed sign-ins",
    }


# --- the pull-request view -------------------------------------------------------------------


def test_the_markdown_plan_shows_detection_tests_beside_each_change(
    deployed: Path, emulator: Emulator
) -> None:
    rule = deployed / "rules" / SEED_RULE.name
    text = rule.read_text(encoding="utf-8")
    rule.write_text(text.replace("level: medium", "level: high"), encoding="utf-8")
    passing = run(deployed, emulator, "plan", "--format", "markdown", "--skip-kql")
    assert passing.code == 0, passing.log
    row = next(line for line in passing.stdout.splitlines() if "Cloudflared" in line)
    assert row.endswith("| ✅ 6/6 cases pass |"), row
    assert "- `severity`: `Medium` → `High`" in passing.stdout

    # The options list's `contains` becomes `endswith`: the three tunnel runs stop matching.
    broken = text.replace("CommandLine|contains:\n", "CommandLine|endswith:\n")
    rule.write_text(broken, encoding="utf-8")
    failing = run(deployed, emulator, "plan", "--format", "markdown", "--skip-kql")
    assert failing.code == 0, failing.log
    row = next(line for line in failing.stdout.splitlines() if "Cloudflared" in line)
    assert row.endswith("| ❌ 3 of 6 cases fail |"), row
    assert "Detection test **tunnel run with a token** (must match) failed" in failing.stdout
    assert '"DvcHostname": "WS-FIN-07"' in failing.stdout
    assert "```diff" in failing.stdout


def test_the_emulator_command_serves_until_interrupted_and_keeps_its_state(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, "-m", "deployer", "emulator", "--state", str(state), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            found = re.search(r"local workspace emulator at (https://127\.0\.0\.1:\d+)", line)
            if found:
                url = found[1]
                break
        assert url is not None
        endpoint = _Endpoint(url, state / "ca.pem")
        root = write_project(tmp_path / "project", endpoint)
        result = run(root, endpoint, "deploy", "--auto-approve", "--skip-kql")
        assert result.code == 0, result.log
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    saved = json.loads((state / "state.json").read_text(encoding="utf-8"))
    assert SEED_ID in json.dumps(saved)


@dataclass(frozen=True)
class _Endpoint:
    """An emulator run by another process: its URL and CA file are all a project needs."""

    url: str
    ca_path: Path


def test_all_envs_gives_one_plan_per_environment_and_deploys_each(
    tmp_path: Path, emulator: Emulator
) -> None:
    second = (
        "\n[environments.dr]\n"
        f'subscription_id = "{SUB}"\nresource_group = "{RG}"\nworkspace = "law-dr"\n'
        f'arm_endpoint = "{emulator.url}"\ncredential = "token"\n'
        'overrides = { display_name_prefix = "[DR] ", enabled = false }\n'
    )
    root = write_project(tmp_path, emulator, extra=second)

    unnamed = run(root, emulator, "plan", "--skip-kql")
    assert unnamed.code == 64, unnamed.log
    assert "--env NAME or --all-envs" in unnamed.stderr

    planned = run(root, emulator, "plan", "--all-envs", "--skip-kql", "--detailed-exitcode")
    assert planned.code == 2, planned.log
    assert planned.stdout.count("+ create") == 2
    assert "Plan for lab (law-soc)" in planned.stdout
    assert "Plan for dr (law-dr)" in planned.stdout

    both = ("deploy", "--env", "lab", "--env", "dr", "--auto-approve", "--skip-kql")
    assert run(root, emulator, *both).code == 0
    lab = emulator.rules(SUB, RG, WS)[SEED_ID]["properties"]
    dr = emulator.rules(SUB, RG, "law-dr")[SEED_ID]["properties"]
    assert (lab["displayName"], lab["enabled"]) == ("Cloudflared Tunnel Execution", True)
    assert (dr["displayName"], dr["enabled"]) == ("[DR] Cloudflared Tunnel Execution", False)
    assert "environment: dr" in dr["description"]


@pytest.mark.parametrize(
    ("credential", "needle"),
    [
        ("token", "SENTINEL_DEPLOYER_TOKEN, which is not set"),
        ("workload-identity", 'credential = "workload-identity"'),
    ],
)
def test_a_credential_without_its_variables_is_one_line(
    tmp_path: Path, emulator: Emulator, credential: str, needle: str
) -> None:
    root = write_project(tmp_path, emulator)
    config = root / "sentinel-deployer.toml"
    config.write_text(
        config.read_text().replace('credential = "token"', f'credential = "{credential}"')
    )
    cleared = {
        name: "" for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE")
    }
    result = cli(root, "plan", "--skip-kql", env={**cleared, "SENTINEL_DEPLOYER_TOKEN": ""})
    assert result.code == 1, result.log
    _one_clean_line(result, "error:", needle)
    assert emulator.requests == [], "nothing was sent without a credential"
