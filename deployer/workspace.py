"""The Azure seam: credentials, the SDK client, and list/get/put/delete of alert rules.

The only module that imports azure-identity and azure-mgmt-securityinsight. Everything else
gets a `Workspace` and plain JSON dicts. Retries of 408/429/5xx are azure-core's RetryPolicy,
which honours Retry-After; a response lost after the request was sent is NOT retried here (the
apply stage reads the rule back first, so a write is never guessed at).
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from azure import identity
from azure.core import AzureClouds
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.mgmt.core.tools import get_arm_endpoints
from azure.mgmt.securityinsight import SecurityInsightsMgmtClient

from deployer.errors import DeployerError

logger = logging.getLogger(__name__)

TOKEN_VARIABLE = "SENTINEL_DEPLOYER_TOKEN"
_CLOUDS: Mapping[str, AzureClouds] = {
    "AzureCloud": AzureClouds.AZURE_PUBLIC_CLOUD,
    "AzureUSGovernment": AzureClouds.AZURE_US_GOVERNMENT,
    "AzureChinaCloud": AzureClouds.AZURE_CHINA_CLOUD,
}
# What each kind of request needs, for 403 messages (Microsoft Learn, "Roles and permissions in
# Microsoft Sentinel").
_ROLE_FOR = {
    "read": "Microsoft Sentinel Reader",
    "write": "Microsoft Sentinel Contributor",
}
# Reads are safe to send again when their answer is lost; writes are not (see the module note).
READ_RETRIES = 3


@dataclass(frozen=True)
class WorkspaceRef:
    """Where the rules go: one Log Analytics workspace with Sentinel, and how to reach it."""

    label: str
    subscription_id: str
    resource_group: str
    workspace: str
    api_version: str
    cloud: str = "AzureCloud"
    arm_endpoint: str | None = None


class AzureError(DeployerError):
    """A request Azure refused or could not answer, with what is needed to act on it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id


class ResponseLostError(AzureError):
    """The request may have reached Azure, but no answer came back."""


class PreconditionFailedError(AzureError):
    """412: the rule's etag (or existence) is not what the request said it would be."""


class Workspace:
    """Alert rules of one workspace through the SDK; plain JSON dicts in and out."""

    def __init__(
        self,
        ref: WorkspaceRef,
        credential: TokenCredential,
        *,
        connection_verify: str | bool | None = None,
        retry_total: int = 10,
    ) -> None:
        self.ref = ref
        if connection_verify is None:
            connection_verify = trusted_certificates()
        endpoints = get_arm_endpoints(_CLOUDS[ref.cloud])
        base_url = ref.arm_endpoint or endpoints["resource_manager"]
        self._client = SecurityInsightsMgmtClient(
            credential,
            ref.subscription_id,
            base_url=base_url,
            credential_scopes=endpoints["credential_scopes"],
            api_version=ref.api_version,
            connection_verify=connection_verify,
            # Status retries (408, 429, 500, 502, 503, 504) honour Retry-After. Read retries are
            # off: a write whose answer was lost is read back by the caller before any retry.
            retry_policy=RetryPolicy(retry_total=retry_total, retry_read=0, retry_backoff_max=60),
        )

    def close(self) -> None:
        self._client.close()

    def list_rules(self) -> list[dict[str, Any]]:
        """Every alert rule, in one paged list (the SDK follows nextLink)."""
        pages = self._client.alert_rules.list(
            self.ref.resource_group, self.ref.workspace, retry_read=READ_RETRIES
        )
        try:
            return [_as_json(rule) for rule in pages]
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as error:
            self._raise(error, "list the alert rules", "read")

    def get_rule(self, rule_id: str) -> dict[str, Any] | None:
        """One rule, or None when the workspace has no rule of that name."""
        try:
            rule = self._client.alert_rules.get(
                self.ref.resource_group, self.ref.workspace, rule_id, retry_read=READ_RETRIES
            )
        except HttpResponseError as error:
            if error.status_code == 404 and _code(error) != "ResourceNotFound":
                return None
            self._raise(error, f"read rule {rule_id}", "read")
        except (ServiceRequestError, ServiceResponseError) as error:
            self._raise(error, f"read rule {rule_id}", "read")
        return _as_json(rule)

    def put_rule(
        self,
        rule_id: str,
        body: Mapping[str, Any],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> dict[str, Any]:
        """Create or replace a rule with exactly `body` (sent as JSON bytes, untouched)."""
        headers = {}
        if if_match:
            headers["If-Match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = "*"
        payload = io.BytesIO(json.dumps(body, ensure_ascii=False).encode("utf-8"))
        try:
            rule = self._client.alert_rules.create_or_update(
                self.ref.resource_group,
                self.ref.workspace,
                rule_id,
                payload,
                content_type="application/json",
                headers=headers,
            )
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as error:
            self._raise(error, f"write rule {rule_id}", "write")
        return _as_json(rule)

    def delete_rule(self, rule_id: str, *, if_match: str | None = None) -> None:
        headers = {"If-Match": if_match} if if_match else {}
        try:
            self._client.alert_rules.delete(
                self.ref.resource_group, self.ref.workspace, rule_id, headers=headers
            )
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as error:
            self._raise(error, f"delete rule {rule_id}", "write")

    def _raise(self, error: Exception, doing: str, access: str) -> NoReturn:
        where = f"{self.ref.label}: cannot {doing}"
        if isinstance(error, ServiceResponseError):
            raise ResponseLostError(f"{where}: the connection dropped before an answer") from error
        if isinstance(error, ServiceRequestError):
            raise AzureError(f"{where}: {_first_line(error)}") from error
        if isinstance(error, ClientAuthenticationError) and error.response is None:
            # The credential failed before any request was sent (no sign-in, no variables).
            raise AzureError(
                f"{where}: cannot get a token ({_first_line(error).rstrip('.')}); sign in "
                "(az login) or set the environment's credential and what it needs (README)"
            ) from error
        assert isinstance(error, HttpResponseError)
        status, code = error.status_code, _code(error)
        request_id = _request_id(error)
        detail = _message(error)
        hint = _hint(status, code, access, self.ref)
        message = f"{where}: HTTP {status} {code or ''}: {detail}{hint}".replace("  ", " ")
        if request_id:
            message += f" (request id {request_id})"
        kind = PreconditionFailedError if status == 412 else AzureError
        raise kind(message, status=status, code=code, request_id=request_id) from error


def trusted_certificates() -> str | bool:
    """The CA bundle to trust: REQUESTS_CA_BUNDLE, else SSL_CERT_FILE, else the system's."""
    # requests reads only REQUESTS_CA_BUNDLE (and CURL_CA_BUNDLE) by itself; SSL_CERT_FILE is
    # what OpenSSL and most other tools honour, so a corporate proxy's CA set there works too.
    for variable in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(variable)
        if value:
            return value
    return True


class StaticToken(TokenCredential):
    """A bearer token given from outside (SENTINEL_DEPLOYER_TOKEN, or the emulator's)."""

    def __init__(self, token: str, expires_on: int) -> None:
        self._token = token
        self._expires_on = expires_on

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, self._expires_on)

    def __repr__(self) -> str:
        # Never show the token, wherever this object ends up printed.
        return "StaticToken(***)"


def credential_for(kind: str) -> TokenCredential:
    """The azure-identity credential for a config `credential` value."""
    if kind == "token":
        token = os.environ.get(TOKEN_VARIABLE)
        if not token:
            raise AzureError(
                f'credential = "token" needs the bearer token in {TOKEN_VARIABLE}, which is not set'
            )
        # The service checks expiry; an hour is what ARM tokens usually carry.
        return StaticToken(token, int(time.time()) + 3600)
    try:
        if kind == "cli":
            return identity.AzureCliCredential()
        if kind == "workload-identity":
            return identity.WorkloadIdentityCredential()
        if kind == "managed-identity":
            return identity.ManagedIdentityCredential()
        return identity.DefaultAzureCredential()
    except ValueError as error:
        # azure-identity refuses at construction when its variables are missing.
        raise AzureError(
            f'credential = "{kind}": {_first_line(error).split(". See ")[0].rstrip(".")}; set '
            "its variables (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE for "
            "workload-identity)"
        ) from error


def _as_json(model: Any) -> dict[str, Any]:
    """The SDK's models are mappings over the wire JSON; unknown fields are kept."""
    if hasattr(model, "as_dict"):
        return dict(model.as_dict())
    return dict(model)


def _code(error: HttpResponseError) -> str | None:
    odata = getattr(error, "error", None)
    code = getattr(odata, "code", None)
    if code:
        return str(code)
    body = _body(error)
    inner = body.get("error") if isinstance(body, dict) else None
    return str(inner.get("code")) if isinstance(inner, dict) and inner.get("code") else None


def _message(error: HttpResponseError) -> str:
    body = _body(error)
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict) and inner.get("message"):
        return " ".join(str(inner["message"]).split())
    odata = getattr(error, "error", None)
    message = getattr(odata, "message", None) or error.reason or "no message"
    return " ".join(str(message).split())


def _body(error: HttpResponseError) -> Any:
    response = error.response
    if response is None:
        return None
    try:
        return json.loads(response.text())
    except (ValueError, TypeError):
        return None


def _request_id(error: HttpResponseError) -> str | None:
    response = error.response
    if response is None:
        return None
    headers = getattr(response, "headers", {})
    value = headers.get("x-ms-request-id") or headers.get("x-ms-correlation-request-id")
    return str(value) if value else None


def _hint(status: int | None, code: str | None, access: str, ref: WorkspaceRef) -> str:
    if status == 401:
        return "; sign in again or check the credential setting"
    if status == 403:
        return (
            f"; the identity needs the {_ROLE_FOR[access]} role on resource group "
            f"{ref.resource_group}"
        )
    if status == 404 and code == "ResourceNotFound":
        return (
            f"; check subscription_id, resource_group ({ref.resource_group}) and workspace "
            f"({ref.workspace})"
        )
    return ""


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
