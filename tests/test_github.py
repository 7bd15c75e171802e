"""GitHub output: annotations as the runner parses them, and the sticky comment's REST calls.

The comment is exercised against a local fake of the API (tests/fake_github.py) over real HTTP;
the CLI commands as a user runs them (`python -m deployer`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_cli import cli, project, seed

from deployer.github import (
    COMMENT_LIMIT,
    PLAN_MARKER,
    GitHubError,
    PullRequest,
    annotation,
    comment_body,
    escape_data,
    escape_property,
    post_sticky_comment,
    pull_request_from_environment,
)

from conftest import rule_yaml
from fake_github import FakeGitHub

TOKEN = "ghs_test-token-that-must-never-be-printed"
REPOSITORY = "acme/detections"


# --- annotations -----------------------------------------------------------------------------


def test_data_escapes_percent_cr_and_lf_and_properties_also_colon_and_comma() -> None:
    assert escape_data("50% done\r\nnext: a, b") == "50%25 done%0D%0Anext: a, b"
    assert escape_property("C:\\rules\\a,b.yml") == "C%3A\\rules\\a%2Cb.yml"
    # Percent first, so an escape is never escaped twice.
    assert escape_data("%0A") == "%250A"


def test_an_annotation_names_file_line_and_title_and_keeps_the_message_on_one_line() -> None:
    line = annotation(
        "error", "bad level\nuse one of: low, high", file="rules/a.yml", line=7, title="R: x"
    )
    assert line == (
        "::error file=rules/a.yml,line=7,title=R%3A x::bad level%0Ause one of: low, high"
    )
    assert annotation("warning", "no tests") == "::warning::no tests"


# --- the comment body ------------------------------------------------------------------------


def test_a_comment_starts_with_the_marker_and_is_kept_whole_when_it_fits() -> None:
    body, truncated = comment_body("### Plan\n\nno changes\n")
    assert body == f"{PLAN_MARKER}\n### Plan\n\nno changes\n" and not truncated


def test_a_long_comment_is_cut_at_a_line_within_the_limit_and_says_where_the_rest_is() -> None:
    rows = "\n".join(f"| rule {n} | create |" for n in range(6000))
    markdown = f"### Plan\n\n<details><summary>r</summary>\n\n```diff\n{rows}\n```\n</details>\n"
    body, truncated = comment_body(markdown, full_text_at="https://github.invalid/run/1")
    assert truncated and len(body) <= COMMENT_LIMIT
    assert body.startswith(PLAN_MARKER)
    assert "[the job summary](https://github.invalid/run/1)" in body
    # The open code block and details element are closed before the note.
    before_note = body.split("\n\n**The plan is longer")[0]
    assert before_note.count("```") % 2 == 0
    assert before_note.count("<details>") == before_note.count("</details>")
    # Cut at a line: the last table row before the note is whole.
    kept = [line for line in before_note.splitlines() if line.startswith("| rule ")]
    assert kept and all(line.endswith(" | create |") for line in kept)


# --- the REST calls --------------------------------------------------------------------------


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(REPOSITORY, 7, TOKEN).start()
    try:
        yield fake
    finally:
        fake.stop()


def pull(fake: FakeGitHub) -> PullRequest:
    return PullRequest(fake.url, REPOSITORY, 7)


def test_the_first_post_creates_and_later_ones_edit_the_same_comment(github: FakeGitHub) -> None:
    github.add_comment(f"quoting {PLAN_MARKER} in a review")
    first = post_sticky_comment(pull(github), "plan one", token=TOKEN)
    second = post_sticky_comment(pull(github), "plan two", token=TOKEN)
    assert (first.action, second.action) == ("created", "updated")
    assert first.comment_id == second.comment_id
    (ours,) = github.marked(PLAN_MARKER)
    assert ours["body"] == f"{PLAN_MARKER}\nplan two\n"
    assert len(github.comments) == 2
    assert github.methods() == ["GET", "POST", "GET", "PATCH"]


def test_our_comment_is_found_beyond_the_first_page(github: FakeGitHub) -> None:
    for number in range(250):
        github.add_comment(f"note {number}")
    github.add_comment(f"{PLAN_MARKER}\nold plan", login="github-actions[bot]")
    result = post_sticky_comment(pull(github), "new plan", token=TOKEN)
    assert result.action == "updated"
    pages = [r.query.get("page", "1") for r in github.requests if r.method == "GET"]
    assert pages == ["1", "2", "3"]
    assert len(github.marked(PLAN_MARKER)) == 1


def test_a_refusal_names_status_message_request_id_and_permission_but_not_the_token(
    github: FakeGitHub,
) -> None:
    with pytest.raises(GitHubError) as refused:
        post_sticky_comment(pull(github), "plan", token="wrong-token")
    text = str(refused.value)
    assert "HTTP 401: Bad credentials" in text and "request id FAKE:0001" in text
    assert "pull-requests: write" in text and "wrong-token" not in text


class _Redirecting(BaseHTTPRequestHandler):
    """Answers every request with a redirect to `target`, and records what reached it."""

    target = ""
    seen: list[str | None] = []  # noqa: RUF012 - one test's scratch list

    def do_GET(self) -> None:
        _Redirecting.seen.append(self.headers.get("Authorization"))
        self.send_response(302)
        self.send_header("Location", _Redirecting.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_a_redirect_is_not_followed_so_the_token_never_leaves_the_api_host() -> None:
    other = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        _Redirecting.target = f"http://localhost:{other.server_address[1]}/elsewhere"
        _Redirecting.seen = []
        api = f"http://127.0.0.1:{other.server_address[1]}"
        with pytest.raises(GitHubError, match="HTTP 302"):
            post_sticky_comment(PullRequest(api, REPOSITORY, 7), "plan", token=TOKEN)
        assert len(_Redirecting.seen) == 1
    finally:
        other.shutdown()
        other.server_close()


def test_plain_http_is_refused_except_to_this_machine() -> None:
    with pytest.raises(GitHubError, match="must be an https URL"):
        post_sticky_comment(
            PullRequest("http://api.github.invalid", REPOSITORY, 7), "p", token=TOKEN
        )


def test_the_pull_request_comes_from_the_workflow_environment(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 12}}), encoding="utf-8")
    environ = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPOSITORY}
    found, token = pull_request_from_environment({**environ, "GITHUB_EVENT_PATH": str(event)})
    assert found == PullRequest("https://api.github.com", REPOSITORY, 12) and token == TOKEN
    with pytest.raises(GitHubError, match="GITHUB_TOKEN not set"):
        pull_request_from_environment({"GITHUB_REPOSITORY": REPOSITORY}, 3)
    with pytest.raises(GitHubError, match="pass --pr N"):
        pull_request_from_environment(environ)


# --- the CLI ---------------------------------------------------------------------------------


def test_environments_lists_the_local_emulator_when_none_is_configured(tmp_path: Path) -> None:
    result = cli(project(tmp_path, {"r.yml": seed()}), "environments", "--format", "json")
    assert result.code == 0, result.log
    assert json.loads(result.stdout) == [
        {"name": "local", "emulator": True, "workspace": "local-emulator/local"}
    ]


def test_environments_gives_the_matrix_of_the_configured_or_named_environments(
    tmp_path: Path,
) -> None:
    config = """
        [environments.prod]
        subscription_id = "6F1D2C3B-0A9E-4D8C-B7A6-1E2F3A4B5C6D"
        resource_group = "RG-SOC"
        workspace = "law-soc"

        [environments.lab]
        emulator = true
    """
    root = project(tmp_path, {"r.yml": seed()}, config)
    every = cli(root, "environments", "--format", "json")
    assert every.code == 0, every.log
    assert json.loads(every.stdout) == [
        {
            "name": "prod",
            "emulator": False,
            "workspace": "6f1d2c3b-0a9e-4d8c-b7a6-1e2f3a4b5c6d/rg-soc/law-soc",
        },
        {"name": "lab", "emulator": True, "workspace": "local-emulator/lab"},
    ]
    named = cli(root, "environments", "--format", "json", "--env", "lab")
    assert [e["name"] for e in json.loads(named.stdout)] == ["lab"]
    unknown = cli(root, "environments", "--env", "staging")
    assert unknown.code == 64 and "no environment 'staging'" in unknown.stderr, unknown.log


def test_validate_in_github_format_prints_an_annotation_per_problem(tmp_path: Path) -> None:
    bad = rule_yaml(title="Bad, Level", level="severe")
    root = project(tmp_path, {"good.yml": seed(), "bad.yml": bad})
    result = cli(root, "validate", "--format", "github", "--skip-kql")
    assert result.code == 1, result.log
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if text.startswith("level:"))
    assert len(errors) == 1, result.log
    assert errors[0].startswith(f"::error file=rules/bad.yml,line={line},title=Bad%2C Level"), (
        result.log
    )
    # Each rule still gets its line in the log.
    assert any(line.startswith("failed   rules/bad.yml") for line in result.stdout.splitlines())


def test_comment_without_a_token_exits_1_with_the_reason(tmp_path: Path) -> None:
    plan = tmp_path / "plan.md"
    plan.write_text("### Plan\n", encoding="utf-8")
    result = cli(tmp_path, "comment", str(plan), "--pr", "3", env={"GITHUB_TOKEN": ""})
    assert result.code == 1 and "GITHUB_TOKEN" in result.stderr, result.log


def test_comment_posts_the_file_as_the_sticky_comment(tmp_path: Path, github: FakeGitHub) -> None:
    plan = tmp_path / "plan.md"
    plan.write_text("### Plan for `prod`\n", encoding="utf-8")
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_API_URL": github.url}
    first = cli(tmp_path, "comment", str(plan), "--pr", "7", env=env)
    second = cli(tmp_path, "comment", str(plan), "--pr", "7", env=env)
    assert first.code == 0 and second.code == 0, first.log + second.log
    assert first.stdout.startswith("created comment ") and second.stdout.startswith("updated ")
    assert len(github.marked(PLAN_MARKER)) == 1
    assert TOKEN not in first.output + second.output


def test_a_failing_detection_case_is_an_annotation_on_its_line_in_the_tests_file(
    tmp_path: Path,
) -> None:
    project(tmp_path, {"seed.yml": seed()})
    rule = tmp_path / "rules" / "seed.yml"
    rule.write_text(
        seed().replace("CommandLine|contains:\n", "CommandLine|endswith:\n"), encoding="utf-8"
    )
    cases = (tmp_path / "rules" / "seed.tests.yml").read_text(encoding="utf-8").splitlines()
    name = "tunnel run with a token"
    line = next(n for n, text in enumerate(cases, 1) if text.strip() == f"- name: {name}")
    result = cli(tmp_path, "test", "--format", "github")
    assert result.code == 1, result.log
    errors = [text for text in result.stdout.splitlines() if text.startswith("::error ")]
    assert len(errors) == 3, result.log
    assert any(
        text.startswith(f"::error file=rules/seed.tests.yml,line={line},title=")
        and f"case '{name}': expected a match" in text
        and "%0Aevent: {" in text
        for text in errors
    ), result.log
