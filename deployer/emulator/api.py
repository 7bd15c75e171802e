"""The Microsoft.SecurityInsights alertRules operations, answered as Azure Resource Manager does.

Authentication, api-version, routing, workspaces, reads and paging; the writes are in `writes`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from deployer.alertrule import API_VERSIONS
from deployer.emulator.arm import ArmError, Options, Request, Response
from deployer.emulator.resources import WorkspaceRef, rendered, rule_id
from deployer.emulator.store import Store, workspace_key
from deployer.emulator.writes import delete_rule, put_rule

# The principal named in 403 answers; the emulator never reads the token, so it has no real one.
EMULATOR_PRINCIPAL = "00000000-0000-0000-0000-00000000e770"

# NOTE: names in a URL are compared case-insensitively (ARM resource provider contract,
# Azure/azure-resource-manager-rpc, v1.0/common-api-details.md, "Case Insensitivity for
# Requests"); the emulator treats the fixed segments so too, as ARM's router does.
_PATH = re.compile(
    r"/subscriptions/(?P<s>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.OperationalInsights/workspaces/(?P<ws>[^/]+)"
    r"/providers/Microsoft\.SecurityInsights/alertRules(?:/(?P<rule>[^/]+))?/?",
    re.IGNORECASE,
)


class AlertRulesApi:
    """Answers list, get, create-or-update and delete of alert rules in any workspace."""

    def __init__(self, store: Store, options: Options) -> None:
        self._store = store
        self._options = options
        self._workspaces = (
            {workspace_key(ref): ref for ref in options.workspaces}
            if options.workspaces is not None
            else None
        )

    def handle(self, request: Request) -> Response:
        """Answer one request; every refusal is an ARM error body."""
        try:
            return self._answer(request)
        except ArmError as error:
            return error.response()

    def workspace_ref(self, ref: WorkspaceRef) -> WorkspaceRef:
        """How the emulator spells a workspace in ids: as configured, else as first written.

        Raises `ArmError` (404 ResourceNotFound) for a workspace outside the configured ones.
        """
        if self._workspaces is None:
            return self._store.workspace_ref(ref)
        known = self._workspaces.get(workspace_key(ref))
        if known is None:
            raise _workspace_not_found(ref)
        return known

    def _answer(self, request: Request) -> Response:
        # NOTE: ARM authenticates before anything else, then checks api-version, then routes.
        _authenticate(request.headers, self._options.accepted_token)
        api_version = _api_version(request.query)
        ref, rule = self._route(request.path)
        if rule is None:
            if request.method != "GET":
                raise _method_not_allowed(request.method)
            return self._list(request, ref, api_version)
        if request.method == "GET":
            return self._get(ref, rule, api_version)
        if request.method not in ("PUT", "DELETE"):
            raise _method_not_allowed(request.method)
        if self._options.read_only:
            raise _forbidden(request.method, ref, rule)
        if request.method == "PUT":
            return put_rule(
                self._store, request, ref, rule, api_version=api_version, options=self._options
            )
        return delete_rule(self._store, request, ref, rule)

    def _route(self, path: str) -> tuple[WorkspaceRef, str | None]:
        """The workspace and rule a path names (rule None for the collection)."""
        match = _PATH.fullmatch(path)
        if match is None:
            # NOTE: the emulator guesses ARM's answer to a resource type it does not serve.
            raise ArmError(
                404,
                "InvalidResourceType",
                f"The resource path '{path}' is not served by this emulator, which knows only "
                "Microsoft.SecurityInsights/alertRules of Log Analytics workspaces.",
            )
        ref = self.workspace_ref((unquote(match["s"]), unquote(match["rg"]), unquote(match["ws"])))
        return ref, unquote(match["rule"]) if match["rule"] is not None else None

    def _get(self, ref: WorkspaceRef, rule: str, api_version: str) -> Response:
        resource = self._store.get(ref, rule)
        if resource is None:
            raise _rule_not_found(ref, rule)
        return Response(200, rendered(resource, api_version, self._options.duration_style))

    def _list(self, request: Request, ref: WorkspaceRef, api_version: str) -> Response:
        rules = self._store.list(ref)
        after = _skip_token(request.query.get("$skipToken"))
        if after is not None:
            rules = [rule for rule in rules if str(rule["name"]).lower() > after]
        page, rest = rules[: self._options.page_size], rules[self._options.page_size :]
        body: dict[str, Any] = {
            "value": [rendered(r, api_version, self._options.duration_style) for r in page]
        }
        # NOTE: x-ms-pageable with nextLinkName "nextLink" (AlertRules.json, AlertRules_List);
        # ARM's nextLinks are absolute URLs carrying api-version and an opaque $skipToken.
        if rest:
            token = base64.urlsafe_b64encode(str(page[-1]["name"]).lower().encode()).decode()
            body["nextLink"] = (
                f"{request.base_url}{request.path}?api-version={quote(api_version)}"
                f"&$skipToken={token.rstrip('=')}"
            )
        return Response(200, body)


def _rule_not_found(ref: WorkspaceRef, rule: str) -> ArmError:
    """404 for a rule the workspace does not hold."""
    # NOTE: the emulator guesses the message; ARM's generic code for a missing child is NotFound.
    return ArmError(404, "NotFound", f"Alert rule '{rule}' was not found in workspace '{ref[2]}'.")


def _authenticate(headers: Mapping[str, str], accepted: str | None) -> None:
    # NOTE: ARM's code and wording for a missing or malformed token, as it answers them, with a
    # WWW-Authenticate: Bearer challenge whose parameters are the emulator's guess. The token
    # itself is never logged or echoed.
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if value and scheme.lower() == "bearer" and token.strip():
        if accepted is None or token.strip() == accepted:
            return
        # NOTE: ARM's code for a token it cannot accept (expired, wrong audience, forged) is
        # InvalidAuthenticationToken; the wording is the emulator's guess.
        raise ArmError(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            (("WWW-Authenticate", 'Bearer error="invalid_token"'),),
        )
    problem = "is missing" if not value else "is provided in an invalid format"
    challenge = (
        'Bearer authorization_uri="https://login.microsoftonline.com/common", '
        'error="invalid_token", '
        f"error_description=\"The authentication failed because the 'Authorization' header "
        f'{problem}."'
    )
    raise ArmError(
        401,
        "AuthenticationFailed",
        f"Authentication failed. The 'Authorization' header {problem}.",
        (("WWW-Authenticate", challenge),),
    )


def _api_version(query: Mapping[str, str]) -> str:
    # NOTE: ARM's codes and wording for a missing or unknown api-version, as it answers them.
    version = query.get("api-version")
    if version is None:
        raise ArmError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version not in API_VERSIONS:
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are "
            f"'{','.join(sorted(API_VERSIONS, reverse=True))}'.",
        )
    return version


def _skip_token(token: str | None) -> str | None:
    """The lower-case name of the last rule of the previous page."""
    if token is None:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ArmError(400, "BadRequest", f"The $skipToken '{token}' is not valid.") from error


def _workspace_not_found(ref: WorkspaceRef) -> ArmError:
    # NOTE: ARM's wording for a parent resource that does not exist.
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.OperationalInsights/workspaces/{ref[2]}' under resource group "
        f"'{ref[1]}' was not found. For more details please go to "
        "https://aka.ms/ARMResourceNotFoundFix",
    )


def _forbidden(method: str, ref: WorkspaceRef, rule: str) -> ArmError:
    # NOTE: ARM's wording when the caller's role lacks an action (Learn, "Troubleshoot Azure
    # RBAC"); actions are Microsoft.SecurityInsights/alertRules/write and /delete.
    action = "write" if method == "PUT" else "delete"
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{EMULATOR_PRINCIPAL}' with object id '{EMULATOR_PRINCIPAL}' does not have "
        f"authorization to perform action 'Microsoft.SecurityInsights/alertRules/{action}' over "
        f"scope '{rule_id(ref, rule)}' or the scope is invalid. If access was "
        "recently granted, please refresh your credentials.",
    )


def _method_not_allowed(method: str) -> ArmError:
    # NOTE: the emulator guesses; it serves GET on the collection and GET/PUT/DELETE on a rule.
    return ArmError(405, "MethodNotAllowed", f"The method '{method}' is not allowed here.")
