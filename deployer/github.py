"""The GitHub seam: workflow commands (annotations) and the sticky pull-request comment.

Annotations are lines on stdout that the Actions runner reads (`::error file=F,line=L::text`).
The comment goes through the REST API with the standard library's urllib: the one comment of
ours is found by a hidden marker among the pull request's comments and edited, or created.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from deployer import __version__
from deployer.errors import DeployerError
from deployer.model import RuleResult
from deployer.report import relative_path

if TYPE_CHECKING:
    # Only for annotations: the runner imports DuckDB, which every command would pay for.
    from deployer.detection.runner import RuleTestResult

logger = logging.getLogger(__name__)

# The first line of every comment this tool writes; how a later run finds it again.
PLAN_MARKER = "<!-- sentinel-deployer plan -->"
# GitHub refuses a comment body longer than this (characters).
COMMENT_LIMIT = 65_536
API_VERSION = "2022-11-28"
PER_PAGE = 100
# Hosts where plain http is allowed: a local fake of the API in tests, never a real server.
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


class GitHubError(DeployerError):
    """The GitHub API refused a request or could not be reached; never carries the token."""


# --- workflow commands --------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message: %, CR and LF are the runner's own syntax."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also ':' and ',', which separate properties."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: Literal["error", "warning", "notice"],
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    title: str | None = None,
) -> str:
    """One `::error file=F,line=L,title=T::message` line, escaped as the runner expects."""
    properties = [
        f"{key}={escape_property(value)}"
        for key, value in (
            ("file", file),
            ("line", str(line) if line is not None else None),
            ("title", title),
        )
        if value is not None
    ]
    head = f"::{level} {','.join(properties)}" if properties else f"::{level}"
    return f"{head}::{escape_data(message)}"


def result_annotations(result: RuleResult, *, root: Path | None = None) -> Iterator[str]:
    """An annotation per problem of one rule, on the file and line the problem names."""
    for problem in result.problems:
        yield annotation(
            problem.severity,
            problem.message,
            file=relative_path(problem.location.path, root),
            line=problem.location.line,
            title=_title(problem.title or result.title, problem.code),
        )


def detection_annotations(result: RuleTestResult, *, root: Path | None = None) -> Iterator[str]:
    """An error on each failing case (its line in the tests file), or on the rule file."""
    for error in result.errors:
        yield annotation(
            "error",
            error,
            file=relative_path(result.path, root),
            title=_title(result.title, "detection tests"),
        )
    for outcome in result.cases:
        if outcome.passed:
            continue
        yield annotation(
            "error",
            f"case '{outcome.case.name}': {outcome.reason}\nevent: {outcome.event_json()}",
            file=relative_path(outcome.case.location.path, root),
            line=outcome.case.location.line,
            title=_title(result.title, "detection test failed"),
        )


def _title(rule: str | None, what: str) -> str:
    return f"{rule}: {what}" if rule else what


# --- the sticky comment -------------------------------------------------------------------


@dataclass(frozen=True)
class PullRequest:
    """Where the comment goes: the API's base URL, `owner/name` and the pull request number."""

    api_url: str
    repository: str
    number: int


@dataclass(frozen=True)
class CommentResult:
    action: Literal["created", "updated"]
    comment_id: int
    url: str | None
    truncated: bool


def comment_body(markdown: str, *, full_text_at: str | None = None) -> tuple[str, bool]:
    """The marker, then the Markdown; cut at a line to fit GitHub's limit, saying so."""
    body = f"{PLAN_MARKER}\n{markdown.rstrip()}\n"
    if len(body) <= COMMENT_LIMIT:
        return body, False
    where = f" in [the job summary]({full_text_at})" if full_text_at else " in the job summary"
    note = (
        f"\n\n**The plan is longer than a comment can hold ({len(body):,} characters); "
        f"it was cut here. The whole plan is{where}.**\n"
    )
    # Close an open code block or details element so the rest of the page still renders.
    room = COMMENT_LIMIT - len(note) - len("\n```\n</details>\n")
    cut = body[:room].rsplit("\n", 1)[0]
    if cut.count("```") % 2:
        cut += "\n```"
    if cut.count("<details>") > cut.count("</details>"):
        cut += "\n</details>"
    return cut + note, True


def post_sticky_comment(
    pull: PullRequest, markdown: str, *, token: str, full_text_at: str | None = None
) -> CommentResult:
    """Edit this tool's comment on the pull request, or create it when there is none."""
    body, truncated = comment_body(markdown, full_text_at=full_text_at)
    client = _Client(pull.api_url, token)
    repo = urllib.parse.quote(pull.repository, safe="/")
    listing = f"/repos/{repo}/issues/{pull.number}/comments"
    existing = _find_marked(client.pages(f"{listing}?per_page={PER_PAGE}"))
    if existing is None:
        created = client.send("POST", listing, {"body": body})
        return CommentResult("created", int(created["id"]), created.get("html_url"), truncated)
    path = f"/repos/{repo}/issues/comments/{existing}"
    updated = client.send("PATCH", path, {"body": body})
    return CommentResult("updated", int(updated["id"]), updated.get("html_url"), truncated)


def pull_request_from_environment(
    environ: Mapping[str, str], number: int | None = None
) -> tuple[PullRequest, str]:
    """The pull request and token from a workflow's environment (GITHUB_*), or what is missing.

    The number is `number` when given, else the `pull_request` of the event that started the
    run (GITHUB_EVENT_PATH).
    """
    missing = [
        name for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY") if not environ.get(name, "").strip()
    ]
    if missing:
        raise GitHubError(
            f"{' and '.join(missing)} not set: run this in a GitHub Actions job, with "
            "`GITHUB_TOKEN: ${{ github.token }}` in the step's env"
        )
    if number is None:
        number = _event_pull_number(environ.get("GITHUB_EVENT_PATH"))
    api_url = environ.get("GITHUB_API_URL") or "https://api.github.com"
    return PullRequest(api_url, environ["GITHUB_REPOSITORY"], number), environ["GITHUB_TOKEN"]


def run_url(environ: Mapping[str, str]) -> str | None:
    """The URL of this workflow run's page (where the job summary is), when known."""
    server = environ.get("GITHUB_SERVER_URL")
    repository = environ.get("GITHUB_REPOSITORY")
    run_id = environ.get("GITHUB_RUN_ID")
    if not (server and repository and run_id):
        return None
    return f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"


def _event_pull_number(event_path: str | None) -> int:
    if not event_path:
        raise GitHubError("no pull request number: pass --pr N (GITHUB_EVENT_PATH is not set)")
    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
        return int(event["pull_request"]["number"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise GitHubError(
            f"{event_path}: not a pull_request event ({type(error).__name__}: {error}); pass --pr N"
        ) from error


def _find_marked(pages: Iterable[list[dict[str, Any]]]) -> int | None:
    for page in pages:
        for comment in page:
            if str(comment.get("body") or "").startswith(PLAN_MARKER):
                return int(comment["id"])
    return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the Authorization header to wherever it points: refuse it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Client:
    """JSON over HTTPS to one API origin, with the token in the Authorization header only."""

    def __init__(self, api_url: str, token: str) -> None:
        parsed = urllib.parse.urlsplit(api_url)
        if parsed.scheme != "https" and not (
            parsed.scheme == "http" and parsed.hostname in _LOOPBACK
        ):
            raise GitHubError(f"GITHUB_API_URL {api_url!r}: must be an https URL")
        self._base = api_url.rstrip("/")
        self._origin = (parsed.scheme, parsed.netloc)
        self._token = token
        self._opener = urllib.request.build_opener(_NoRedirects())

    def pages(self, path: str) -> Iterator[list[dict[str, Any]]]:
        """Each page of a listing, following the Link header's `next` on the same origin."""
        url: str | None = self._base + path
        while url is not None:
            listing, headers = self._request("GET", url, None)
            if not isinstance(listing, list):
                raise GitHubError(f"GET {_safe(url)}: expected a list of comments")
            yield listing
            url = self._next(headers.get("Link", ""))

    def send(self, method: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer, _ = self._request(method, self._base + path, payload)
        if not isinstance(answer, dict) or "id" not in answer:
            raise GitHubError(f"{method} {_safe(self._base + path)}: the answer has no comment id")
        return answer

    def _next(self, link: str) -> str | None:
        found = _NEXT_LINK.search(link)
        if found is None:
            return None
        parsed = urllib.parse.urlsplit(found.group(1))
        if (parsed.scheme, parsed.netloc) != self._origin:
            raise GitHubError(f"the next page is on another host ({parsed.netloc}): not followed")
        return found.group(1)

    def _request(
        self, method: str, url: str, payload: dict[str, Any] | None
    ) -> tuple[Any, Mapping[str, str]]:
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", API_VERSION)
        request.add_header("User-Agent", f"sentinel-deployer/{__version__}")
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        logger.debug("GitHub API: %s %s", method, _safe(url))
        try:
            with self._opener.open(request, timeout=30) as response:
                text = response.read().decode("utf-8")
                return (json.loads(text) if text else None), response.headers
        except urllib.error.HTTPError as error:
            raise GitHubError(_refusal(method, url, error)) from None
        except (urllib.error.URLError, TimeoutError, ValueError) as error:
            raise GitHubError(f"{method} {_safe(url)}: {error}") from error


def _refusal(method: str, url: str, error: urllib.error.HTTPError) -> str:
    """Status, GitHub's message, the request id and the permission to check."""
    try:
        message = str(json.loads(error.read().decode("utf-8")).get("message", ""))
    except (ValueError, AttributeError, OSError):
        message = ""
    request_id = error.headers.get("X-GitHub-Request-Id") if error.headers else None
    text = f"{method} {_safe(url)}: HTTP {error.code}"
    if message:
        text += f": {message}"
    if request_id:
        text += f" (request id {request_id})"
    if error.code in (401, 403, 404):
        text += "; the job needs `permissions: pull-requests: write` and GITHUB_TOKEN set"
    return text


def _safe(url: str) -> str:
    """A URL for messages: without any query string (the listing's page number is enough)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
