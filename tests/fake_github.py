"""A local fake of the GitHub REST endpoints the sticky comment uses, on 127.0.0.1.

It holds one pull request's comments, pages their listing as GitHub does (`per_page`, `page`,
a `Link` header with `rel="next"`), answers POST and PATCH, refuses a wrong token with 401,
and records every request so that a test can say what was sent.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_LISTING = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/(?P<number>\d+)/comments$")
_ONE = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/comments/(?P<id>\d+)$")


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    body: dict[str, Any] | None


@dataclass
class FakeGitHub:
    """`comments` is the pull request's thread, oldest first, as the API lists it."""

    repository: str
    number: int
    token: str
    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    _next_id: int = 1000
    _server: ThreadingHTTPServer | None = None

    def add_comment(self, body: str, login: str = "a-reviewer") -> dict[str, Any]:
        self._next_id += 1
        comment = {
            "id": self._next_id,
            "body": body,
            "user": {"login": login, "type": "User"},
            "html_url": f"https://github.invalid/{self.repository}/pull/{self.number}"
            f"#issuecomment-{self._next_id}",
        }
        self.comments.append(comment)
        return comment

    def marked(self, marker: str) -> list[dict[str, Any]]:
        return [c for c in self.comments if str(c["body"]).startswith(marker)]

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._answer(self, "GET")

            def do_POST(self) -> None:
                fake._answer(self, "POST")

            def do_PATCH(self) -> None:
                fake._answer(self, "PATCH")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        authorization = handler.headers.get("Authorization")
        self.requests.append(Recorded(method, parts.path, query, authorization, body))
        if authorization != f"Bearer {self.token}":
            _send(handler, 401, {"message": "Bad credentials"})
            return
        listing = _LISTING.match(parts.path)
        one = _ONE.match(parts.path)
        if listing and self._ours(listing["repo"], int(listing["number"])):
            if method == "GET":
                self._list(handler, parts.path, query)
                return
            if method == "POST" and body is not None:
                _send(handler, 201, self.add_comment(body["body"], "github-actions[bot]"))
                return
        if one and one["repo"] == self.repository and method == "PATCH" and body is not None:
            for comment in self.comments:
                if comment["id"] == int(one["id"]):
                    comment["body"] = body["body"]
                    _send(handler, 200, comment)
                    return
        _send(handler, 404, {"message": "Not Found"})

    def _ours(self, repo: str, number: int) -> bool:
        return repo == self.repository and number == self.number

    def _list(self, handler: BaseHTTPRequestHandler, path: str, query: dict[str, str]) -> None:
        per_page = min(int(query.get("per_page", "30")), 100)
        page = int(query.get("page", "1"))
        chunk = self.comments[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(self.comments):
            following = urllib.parse.urlencode({"per_page": per_page, "page": page + 1})
            headers["Link"] = f'<{self.url}{path}?{following}>; rel="next"'
        _send(handler, 200, chunk, headers)


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    payload: Any,
    headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(payload).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("X-GitHub-Request-Id", "FAKE:0001")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
