"""The workflows in .github/workflows: their policy, and their own `run:` steps, run for real.

A step is picked by its job and `id`, and its `run:` text, read from the workflow file, is run
with bash as GitHub runs `shell: bash` (`bash --noprofile --norc -eo pipefail`), in a project
folder of the test's, with the job's and the step's `env:` after each `${{ }}` expression is
replaced by a test value. An expression the table below does not know fails the test, so the
workflows cannot drift away from what is tested. GITHUB_STEP_SUMMARY, GITHUB_OUTPUT,
GITHUB_ENV and GITHUB_PATH are temporary files, fresh for each step as on a runner.

What the `uses:` steps and the set-up step do on a runner, the test does itself: the project is
checked out (a temporary folder), the tool is on PATH (the one under test), and Azure is the
local workspace emulator, reached with a token as azure/login would make one available.
GitHub's REST API is a fake on 127.0.0.1 that records every request.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.emulator import Emulator
from deployer.github import PLAN_MARKER

from conftest import REPO, SEED_ID, SEED_RULE, SEED_TESTS, rule_yaml
from fake_github import FakeGitHub

WORKFLOWS = REPO / ".github" / "workflows"
SUB = "3c9e5d1a-7b2f-4e6d-9a8c-0f1e2d3c4b5a"
RG = "rg-detections"
WS = "law-detections"
REPOSITORY = "acme/detections"
PULL = 42
GH_TOKEN = "ghs_fake-installation-token-never-printed"
AZ_TOKEN = "eyJ0eXAiOiJKV1QifQ.fake-azure-token-never-printed"
RULE_B = "22222222-3333-4444-5555-666666666666"
RULE_C = "33333333-4444-5555-6666-777777777777"
# The pinned form every `uses:` must take: a full commit hash and the release it is.
PINNED = re.compile(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def workflow(name: str) -> dict[Any, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def all_workflows() -> list[str]:
    return sorted(path.name for path in WORKFLOWS.glob("*.yml"))


# --- policy --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", all_workflows())
def test_a_workflow_grants_nothing_at_the_top_and_each_job_only_what_it_needs(name: str) -> None:
    loaded = workflow(name)
    assert loaded["permissions"] == {}, name
    for job_name, job in loaded["jobs"].items():
        granted = job.get("permissions")
        assert isinstance(granted, dict), f"{name}: job {job_name} names no permissions"
        logs_in = any(str(s.get("uses", "")).startswith("azure/login@") for s in job["steps"])
        # The OIDC token only where a job logs in to Azure, and only then.
        assert (granted.get("id-token") == "write") == logs_in, f"{name}: job {job_name}"
        assert set(granted.values()) <= {"read", "write"}
        assert not {k for k, v in granted.items() if v == "write"} - {"id-token", "pull-requests"}


@pytest.mark.parametrize("name", all_workflows())
def test_actions_are_pinned_by_commit_and_checkout_keeps_no_credentials(name: str) -> None:
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    uses = [line.strip().removeprefix("- ") for line in text.splitlines() if "uses:" in line]
    assert uses, name
    for line in uses:
        assert PINNED.fullmatch(line), f"{name}: not pinned by commit with a version: {line}"
    for job in workflow(name)["jobs"].values():
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
            # Expressions reach scripts through env only, never pasted into the script.
            assert "${{" not in str(step.get("run", "")), step


def test_plan_jobs_skip_forks_and_deploy_jobs_are_bound_to_their_environment() -> None:
    plan = workflow("plan.yml")["jobs"]
    assert "if" not in plan["validate"]
    assert (
        plan["plan"]["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    )

    assert workflow("deploy.yml")["jobs"]["environments"]["if"] == (
        "github.ref == 'refs/heads/main'"
    )
    deploy = workflow("deploy.yml")["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "${{ matrix.name }}"
    assert deploy["strategy"]["matrix"]["include"] == (
        "${{ fromJSON(needs.environments.outputs.matrix) }}"
    )
    assert "matrix.workspace" in deploy["concurrency"]["group"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    # PyYAML reads the key `on` as True.
    triggers = workflow("deploy.yml")[True]
    assert triggers["push"]["branches"] == ["main"]
    assert set(triggers["workflow_dispatch"]["inputs"]) == {"environments", "prune"}


# --- running the steps ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepRun:
    code: int
    stdout: str
    stderr: str
    summary: str
    outputs: dict[str, str]

    @property
    def log(self) -> str:
        return (
            f"exit code {self.code}\n--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
            f"--- summary ---\n{self.summary}--- outputs ---\n{self.outputs}"
        )

    def texts(self) -> str:
        return self.stdout + self.stderr + self.summary + json.dumps(self.outputs)


@dataclass
class Runner:
    """One repository on one runner: the project folder and the GitHub context of a run."""

    project: Path
    temp: Path
    emulator: Emulator
    github: FakeGitHub
    event: str = "pull_request"
    runs: int = 0

    def context(self, matrix: Mapping[str, Any] | None) -> dict[str, str]:
        """The value of each expression the workflows' `env:` blocks may use."""
        values = {
            "github.token": GH_TOKEN,
            # A push to main carries no inputs; workflow_dispatch would.
            "inputs.environments": "",
            "inputs.prune": "",
        }
        for key, value in (matrix or {}).items():
            values[f"matrix.{key}"] = str(value).lower() if isinstance(value, bool) else value
        return values

    def run(
        self, name: str, job: str, step_id: str, *, matrix: Mapping[str, Any] | None = None
    ) -> StepRun:
        loaded = workflow(name)
        assert loaded["defaults"]["run"]["shell"] == "bash", "the test runs steps as bash does"
        steps = [s for s in loaded["jobs"][job]["steps"] if s.get("id") == step_id]
        assert len(steps) == 1, f"{name}: job {job} has no single step with id {step_id}"
        step = steps[0]
        context = self.context(matrix)
        env = {
            **_expand(loaded.get("env", {}), context),
            **_expand(loaded["jobs"][job].get("env", {}), context),
            **_expand(step.get("env", {}), context),
        }
        self.runs += 1
        files = {
            key: self.temp / f"{job}-{step_id}-{self.runs}.{key.lower()}"
            for key in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH")
        }
        for path in files.values():
            path.write_text("", encoding="utf-8")
        process = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=self.project,
            env={**self._runner_env(), **{k: str(v) for k, v in files.items()}, **env},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return StepRun(
            process.returncode,
            process.stdout,
            process.stderr,
            files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8"),
            _outputs(files["GITHUB_OUTPUT"].read_text(encoding="utf-8")),
        )

    def _runner_env(self) -> dict[str, str]:
        event = self.temp / "event.json"
        event.write_text(
            json.dumps({"pull_request": {"number": PULL, "head": {"repo": {}}}}), encoding="utf-8"
        )
        return {
            # The set-up step puts the tool on PATH; here it is the tool under test.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", str(self.temp)),
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": self.event,
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_REPOSITORY": REPOSITORY,
            "GITHUB_API_URL": self.github.url,
            "GITHUB_SERVER_URL": "https://github.invalid",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_WORKSPACE": str(self.project),
            "RUNNER_TEMP": str(self.temp),
            "NO_COLOR": "1",
            # What azure/login stands for here: a token for the Azure endpoint, and its CA.
            "SENTINEL_DEPLOYER_TOKEN": AZ_TOKEN,
            "REQUESTS_CA_BUNDLE": str(self.emulator.ca_path),
        }


def _expand(env: Mapping[str, Any], context: Mapping[str, str]) -> dict[str, str]:
    def value(found: re.Match[str]) -> str:
        expression = found.group(1)
        if expression not in context:
            pytest.fail(f"the test has no value for the expression ${{{{ {expression} }}}}")
        return context[expression]

    return {key: EXPRESSION.sub(value, str(text)) for key, text in env.items()}


def _outputs(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT's two forms: `name=value` and `name<<DELIMITER` ... `DELIMITER`."""
    found: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            found[name] = "\n".join(iter(lambda: next(lines), delimiter))
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
    return found


def write_rules(project: Path, rules: Mapping[str, str]) -> None:
    folder = project / "rules"
    for path in folder.glob("*.yml"):
        if path.name not in rules and not path.name.endswith(".tests.yml"):
            path.unlink()
    for name, text in rules.items():
        (folder / name).write_text(text, encoding="utf-8")


def rule_b(level: str = "high", needle: str = "evil") -> str:
    return rule_yaml(
        title="Suspicious Command Line",
        rule_id=RULE_B,
        level=level,
        detection=f"selection:\n    CommandLine|contains: '{needle}'\ncondition: selection",
    )


def rule_c(title: str = "Encoded PowerShell") -> str:
    return rule_yaml(
        title=title,
        rule_id=RULE_C,
        detection="selection:\n    CommandLine|contains: '-EncodedCommand'\ncondition: selection",
    )


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    project = tmp_path / "repo"
    (project / "rules").mkdir(parents=True)
    shutil.copy(SEED_RULE, project / "rules" / SEED_RULE.name)
    shutil.copy(SEED_TESTS, project / "rules" / SEED_TESTS.name)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    with Emulator() as emulator:
        (project / "sentinel-deployer.toml").write_text(
            '[project]\nname = "acme-detections"\n\n[environments.lab]\n'
            f'subscription_id = "{SUB}"\nresource_group = "{RG}"\nworkspace = "{WS}"\n'
            f'arm_endpoint = "{emulator.url}"\ncredential = "token"\n',
            encoding="utf-8",
        )
        github = FakeGitHub(REPOSITORY, PULL, GH_TOKEN).start()
        # Reviewers' comments before ours, more than one page of them.
        for number in range(130):
            github.add_comment(f"review note {number}")
        try:
            yield Runner(project, temp, emulator, github)
        finally:
            github.stop()


def pull_request_rules(c_title: str = "Encoded PowerShell") -> dict[str, str]:
    """The seed rule kept, rule B changed (severity and query), rule C added."""
    return {
        SEED_RULE.name: SEED_RULE.read_text(encoding="utf-8"),
        "b.yml": rule_b(level="medium", needle="evil.exe"),
        "c.yml": rule_c(title=c_title),
    }


def deploy_main(runner: Runner) -> tuple[dict[str, Any], list[StepRun]]:
    """main before the pull request: the seed rule and rule B, deployed by the workflow."""
    seed = SEED_RULE.read_text(encoding="utf-8")
    write_rules(runner.project, {SEED_RULE.name: seed, "b.yml": rule_b()})
    listed = runner.run("deploy.yml", "environments", "matrix")
    assert listed.code == 0, listed.log
    matrix = json.loads(listed.outputs["matrix"])
    workspace = f"{SUB}/{RG}/{WS}".lower()
    assert matrix == [{"name": "lab", "emulator": False, "workspace": workspace}]
    first = runner.run("deploy.yml", "deploy", "deploy", matrix=matrix[0])
    assert first.code == 0, first.log
    assert "**2 rules: 2 created**" in first.summary
    assert set(runner.emulator.rules(SUB, RG, WS)) == {SEED_ID, RULE_B}
    return matrix[0], [listed, first]


def test_a_pull_request_is_planned_and_commented_once_and_deployed_when_merged(
    runner: Runner,
) -> None:
    entry, runs = deploy_main(runner)

    write_rules(runner.project, pull_request_rules())
    planned = runner.run("plan.yml", "plan", "plan")
    assert (planned.code, planned.outputs["status"]) == (0, "2"), planned.log
    summary = planned.summary
    assert "### Plan for `lab`" in summary
    assert "**3 rules: 1 to create, 1 to update, 1 unchanged**" in summary
    assert "| + | Encoded PowerShell | create |" in summary
    assert "`severity`: `High` → `Medium`" in summary
    diff = [line for line in summary.splitlines() if line.startswith(("+", "-"))]
    assert any(line.startswith("+") and 'contains "evil.exe"' in line for line in diff), summary
    before = len(runner.github.comments)

    commented = runner.run("plan.yml", "plan", "comment")
    assert commented.code == 0, commented.log
    ours = runner.github.marked(PLAN_MARKER)
    assert len(ours) == 1 and len(runner.github.comments) == before + 1
    assert ours[0]["body"] == f"{PLAN_MARKER}\n{summary.rstrip()}\n"
    # Both pages of the listing were read before deciding to create.
    assert runner.github.methods() == ["GET", "GET", "POST"]
    assert {r.authorization for r in runner.github.requests} == {f"Bearer {GH_TOKEN}"}

    # A second push to the pull request renames rule C: the same comment is edited.
    write_rules(runner.project, pull_request_rules("Encoded PowerShell Command"))
    runner.github.requests.clear()
    again = runner.run("plan.yml", "plan", "plan")
    assert again.outputs["status"] == "2", again.log
    edited = runner.run("plan.yml", "plan", "comment")
    assert edited.code == 0, edited.log
    assert runner.github.methods() == ["GET", "GET", "PATCH"]
    assert runner.github.requests[-1].path.endswith(f"/issues/comments/{ours[0]['id']}")
    assert [c["id"] for c in runner.github.marked(PLAN_MARKER)] == [ours[0]["id"]]
    assert "Encoded PowerShell Command" in runner.github.marked(PLAN_MARKER)[0]["body"]
    assert len(runner.github.comments) == before + 1

    # Merged: the deploy step applies the plan, and the ledger is the job summary.
    runner.event = "push"
    runner.emulator.clear_log()
    deployed = runner.run("deploy.yml", "deploy", "deploy", matrix=entry)
    assert deployed.code == 0, deployed.log
    assert "### Deployed to `lab`" in deployed.summary
    assert "**3 rules: 1 created, 1 updated, 1 unchanged**" in deployed.summary
    stored = runner.emulator.rules(SUB, RG, WS)
    assert stored[RULE_C]["properties"]["displayName"] == "Encoded PowerShell Command"
    assert stored[RULE_B]["properties"]["severity"] == "Medium"
    puts = [r.path.rsplit("/", 1)[1] for r in runner.emulator.requests if r.method == "PUT"]
    assert sorted(puts) == sorted([RULE_B, RULE_C])

    for run in (*runs, planned, commented, again, edited, deployed):
        assert GH_TOKEN not in run.texts() and AZ_TOKEN not in run.texts()


def test_validation_errors_are_annotations_on_their_file_and_line(runner: Runner) -> None:
    bad = rule_b().replace("level: high", "level: severe")
    write_rules(runner.project, {SEED_RULE.name: SEED_RULE.read_text(), "b.yml": bad})
    validated = runner.run("plan.yml", "validate", "validate")
    assert validated.code == 1, validated.log
    annotations = [line for line in validated.stdout.splitlines() if line.startswith("::")]
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if text.startswith("level:"))
    assert any(a.startswith(f"::error file=rules/b.yml,line={line},title=") for a in annotations), (
        validated.log
    )

    # The plan of the same pull request shows the error with its file and line, and fails.
    planned = runner.run("plan.yml", "plan", "plan")
    assert planned.outputs["status"] == "1", planned.log
    assert "### Plan for `lab`: not made" in planned.summary
    assert f"| `rules/b.yml:{line}` | Suspicious Command Line |" in planned.summary
