"""Running a plan: bounded concurrent writes, etag preconditions, and the ledger.

Every write carries a precondition: a create must find no rule (If-None-Match: *), an update
or a delete must find the etag the plan saw (If-Match). A write whose answer was lost is read
back before anything else happens, so the ledger records what the workspace holds, not a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from deployer.fingerprint import digest
from deployer.plan import Plan, PlannedChange
from deployer.workspace import AzureError, PreconditionFailedError, ResponseLostError, Workspace

logger = logging.getLogger(__name__)

Outcome = Literal["created", "updated", "deleted", "unchanged", "failed", "refused", "skipped"]
# How often a write whose answer was lost is sent again after reading the rule back.
LOST_RESPONSE_ATTEMPTS = 5


@dataclass(frozen=True)
class LedgerEntry:
    """What happened to one rule, and for a failure what Azure said."""

    rule_id: str
    display_name: str
    action: str
    outcome: Outcome
    message: str | None = None
    status: int | None = None
    code: str | None = None
    request_id: str | None = None


def apply_plan(
    plan: Plan,
    workspace: Workspace,
    *,
    overwrite_drift: bool = False,
    concurrency: int = 8,
    on_entry: Callable[[LedgerEntry], None] | None = None,
) -> list[LedgerEntry]:
    """Apply every change of `plan`; never PUT an unchanged rule (a PUT restarts its schedule)."""
    entries: dict[str, LedgerEntry] = {}
    writes: list[PlannedChange] = []
    for change in plan.changes:
        entry = _without_write(change, overwrite_drift=overwrite_drift)
        if entry is None:
            writes.append(change)
        else:
            entries[change.rule_id] = entry
            if on_entry:
                on_entry(entry)

    def run(change: PlannedChange) -> LedgerEntry:
        entry = _write(change, workspace)
        if on_entry:
            on_entry(entry)
        return entry

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for entry in pool.map(run, writes):
            entries[entry.rule_id] = entry
    return [entries[change.rule_id] for change in plan.changes if change.rule_id in entries]


def _without_write(change: PlannedChange, *, overwrite_drift: bool) -> LedgerEntry | None:
    """The ledger entry of a change that sends nothing, or None when it must be written."""
    if change.action == "unchanged":
        return _entry(change, "unchanged")
    if change.action == "drift" and not overwrite_drift:
        return _entry(
            change,
            "refused",
            "changed in the workspace since it was deployed; review the plan's diff and "
            "deploy with --overwrite-drift to replace it",
        )
    if change.action == "orphan":
        return _entry(change, "skipped", change.note)
    if change.action == "conflict":
        return _entry(change, "refused", change.note)
    return None


def _write(change: PlannedChange, workspace: Workspace) -> LedgerEntry:
    try:
        if change.action == "delete":
            return _delete(change, workspace)
        return _put(change, workspace)
    except AzureError as error:
        return _entry(
            change,
            "failed",
            str(error),
            status=error.status,
            code=error.code,
            request_id=error.request_id,
        )


def _put(change: PlannedChange, workspace: Workspace) -> LedgerEntry:
    assert change.body is not None
    wanted = digest(change.body.get("properties", {}))
    done: Outcome = "created" if change.action == "create" else "updated"
    body: dict[str, Any] = {"kind": "Scheduled", "properties": change.body["properties"]}
    for _ in range(LOST_RESPONSE_ATTEMPTS):
        try:
            workspace.put_rule(
                change.rule_id,
                body,
                if_match=change.etag if change.etag else None,
                if_none_match=change.etag is None,
            )
            return _entry(change, done)
        except PreconditionFailedError as error:
            # Our own earlier write may have landed with its answer lost; otherwise someone
            # else changed the rule after the plan was made.
            current = workspace.get_rule(change.rule_id)
            if _holds(current, wanted):
                return _entry(change, done)
            return _entry(
                change,
                "refused",
                "the rule changed in the workspace after the plan was made (etag); plan again",
                status=error.status,
                code=error.code,
                request_id=error.request_id,
            )
        except ResponseLostError:
            current = workspace.get_rule(change.rule_id)
            if _holds(current, wanted):
                return _entry(change, done)
            if not _unchanged_since_plan(current, change):
                return _entry(
                    change, "refused", "the rule changed in the workspace after the plan was made"
                )
            logger.info(
                "rule %s: answer lost and the write did not land; sending again", change.rule_id
            )
    return _entry(change, "failed", f"no answer after {LOST_RESPONSE_ATTEMPTS} attempts")


def _delete(change: PlannedChange, workspace: Workspace) -> LedgerEntry:
    for _ in range(LOST_RESPONSE_ATTEMPTS):
        try:
            workspace.delete_rule(change.rule_id, if_match=change.etag)
            return _entry(change, "deleted")
        except (PreconditionFailedError, ResponseLostError) as error:
            current = workspace.get_rule(change.rule_id)
            if current is None:
                return _entry(change, "deleted")
            if isinstance(error, PreconditionFailedError) or current.get("etag") != change.etag:
                return _entry(
                    change,
                    "refused",
                    "the rule changed in the workspace after the plan was made (etag); plan again",
                )
    return _entry(change, "failed", f"no answer after {LOST_RESPONSE_ATTEMPTS} attempts")


def _holds(current: Mapping[str, Any] | None, wanted: str) -> bool:
    """True when the workspace's rule carries exactly the properties we meant to send."""
    if current is None:
        return False
    return digest(current.get("properties") or {}) == wanted


def _unchanged_since_plan(current: Mapping[str, Any] | None, change: PlannedChange) -> bool:
    if change.etag is None:
        return current is None
    return current is not None and current.get("etag") == change.etag


def _entry(
    change: PlannedChange,
    outcome: Outcome,
    message: str | None = None,
    *,
    status: int | None = None,
    code: str | None = None,
    request_id: str | None = None,
) -> LedgerEntry:
    return LedgerEntry(
        change.rule_id,
        change.display_name,
        change.action,
        outcome,
        message,
        status,
        code,
        request_id,
    )
