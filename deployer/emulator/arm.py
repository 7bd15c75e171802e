"""The vocabulary of Azure Resource Manager's wire protocol as the emulator speaks it.

A `Request` goes in and a `Response` comes out, so the HTTP layer only moves bytes; refusals are
raised as `ArmError` and answered in ARM's error shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deployer.emulator.resources import WorkspaceRef


@dataclass(frozen=True)
class Request:
    """One HTTP request, already read: header names lower-case, query values decoded."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    # "https://host:port" as the client addressed the emulator, for absolute nextLinks.
    base_url: str


@dataclass(frozen=True)
class Response:
    """A status, an optional JSON body and extra headers."""

    status: int
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Options:
    """How one emulator instance behaves; fixed for its lifetime."""

    enforce_rule_limit: bool = True
    duration_style: str = "canonical"
    workspaces: frozenset[WorkspaceRef] | None = None
    read_only: bool = False
    page_size: int = 50
    # When set, only this bearer token is accepted (any other is 401), to test sign-in failures.
    accepted_token: str | None = None


class ArmError(Exception):
    """A refusal, answered as ARM does: `{"error": {"code": ..., "message": ...}}`."""

    # NOTE: the CloudError shape of the API description (common/2.0/types.json), which the
    # ARM resource provider contract requires of every error (common-api-details.md).

    def __init__(
        self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def response(self) -> Response:
        """The error as it goes on the wire."""
        return Response(
            self.status, {"error": {"code": self.code, "message": self.message}}, self.headers
        )


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or a 400 for content that is not one."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        # NOTE: ARM's code for a body it cannot read.
        raise ArmError(
            400, "InvalidRequestContent", f"The request content was not valid JSON: {error}"
        ) from error
    if not isinstance(value, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return value
