"""Create-or-update and delete of an alert rule: validation, etag preconditions, the rule limit.

Each write checks and changes the store in one locked step, so two racing writes with the same
etag cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Mapping

from deployer.alertrule import scheduled_rule_problems
from deployer.emulator.arm import ArmError, Options, Request, Response, parse_json_object
from deployer.emulator.resources import Resource, WorkspaceRef, rendered, stored_rule
from deployer.emulator.store import Store

# NOTE: 512 enabled Scheduled rules per workspace (Learn, "Microsoft Sentinel service limits";
# derived-service-constraints.json, workspace_limits.enabled_scheduled_rules).
ENABLED_SCHEDULED_RULE_LIMIT = 512


def put_rule(
    store: Store,
    request: Request,
    ref: WorkspaceRef,
    rule: str,
    *,
    api_version: str,
    options: Options,
) -> Response:
    """PUT .../alertRules/{rule}: 201 when created, 200 when updated, each with a new etag."""
    body = parse_json_object(request.body)
    kind = body.get("kind")
    if kind != "Scheduled":
        # NOTE: the API description has more kinds (Fusion, MicrosoftSecurityIncidentCreation,
        # ...); the emulator writes only the one the deployer deploys.
        raise ArmError(
            400, "BadRequest", f"The emulator accepts only kind 'Scheduled' rules, not {kind!r}."
        )
    problems = scheduled_rule_problems(body, api_version)
    if problems:
        # NOTE: the service answers 400 BadRequest naming the offending property; the wording is
        # the emulator's, the checks are our model of the API description (deployer.alertrule).
        raise ArmError(400, "BadRequest", "Invalid alert rule: " + "; ".join(problems))
    properties = body["properties"]

    with store.locked():
        current = store.get(ref, rule)
        check_preconditions(request.headers, body.get("etag"), current, rule)
        if options.enforce_rule_limit and properties.get("enabled") is True:
            _check_rule_limit(store, ref, rule)
        # An update keeps the spelling the rule was created with.
        name = str(current["name"]) if current is not None else rule
        resource = stored_rule(ref, name, kind, properties)
        store.put(ref, resource)

    status = 201 if current is None else 200
    return Response(status, rendered(resource, api_version, options.duration_style))


def delete_rule(store: Store, request: Request, ref: WorkspaceRef, rule: str) -> Response:
    """DELETE .../alertRules/{rule}: 200 when it existed, 204 when it did not."""
    # NOTE: both statuses, without a body, in the official example DeleteAlertRule.json.
    with store.locked():
        current = store.get(ref, rule)
        check_preconditions(request.headers, None, current, rule)
        existed = store.delete(ref, rule)
    return Response(200 if existed else 204)


def check_preconditions(
    headers: Mapping[str, str], body_etag: object, current: Resource | None, rule: str
) -> None:
    """412 when If-Match, If-None-Match or the body's etag rule out the write."""
    stored = current.get("etag") if current is not None else None
    if_match = _etag_list(headers.get("if-match"))
    if_none_match = _etag_list(headers.get("if-none-match"))
    # NOTE: If-Match / If-None-Match as HTTP defines them (RFC 9110, 13.1.1 and 13.1.2).
    if if_none_match and current is not None and ("*" in if_none_match or stored in if_none_match):
        raise _precondition_failed(f"Alert rule '{rule}' already exists (If-None-Match).")
    if if_match and current is None:
        raise _precondition_failed(f"Alert rule '{rule}' does not exist (If-Match).")
    if if_match and "*" not in if_match and stored not in if_match:
        raise _precondition_failed(
            f"The etag {', '.join(if_match)} of If-Match does not match the current etag "
            f"{stored} of alert rule '{rule}'."
        )
    # NOTE: a body etag on a rule that does not exist yet is accepted: the official example
    # CreateScheduledAlertRule.json sends one and is answered 201. On an existing rule it must be
    # the current etag (the emulator guesses the exact comparison: quotes included).
    if body_etag is not None and current is not None and body_etag != stored:
        raise _precondition_failed(
            f"The etag {body_etag} in the request body does not match the current etag {stored} "
            f"of alert rule '{rule}'."
        )


def _etag_list(value: str | None) -> list[str]:
    if value is None:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def _precondition_failed(message: str) -> ArmError:
    return ArmError(412, "PreconditionFailed", message)


def _check_rule_limit(store: Store, ref: WorkspaceRef, rule: str) -> None:
    enabled = store.count_enabled(ref, "Scheduled", besides=rule)
    if enabled >= ENABLED_SCHEDULED_RULE_LIMIT:
        raise ArmError(
            400,
            "BadRequest",
            f"Alert rule '{rule}' cannot be enabled: workspace '{ref[2]}' already has "
            f"{enabled} enabled Scheduled rules, and the limit is "
            f"{ENABLED_SCHEDULED_RULE_LIMIT} per workspace.",
        )
