"""Desired rules against the workspace's rules: what would change, field by field.

Both sides are normalised first (fingerprint.py), so a duration spelled PT60M, a server default
or a reordered list is no change. Ownership and drift come from the ownership line each rule
carries; rules this project did not deploy are never touched.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deployer.fingerprint import (
    Owner,
    digest,
    is_drifted,
    normalize,
    read_marker,
    without_marker,
)

Action = Literal["create", "update", "adopt", "unchanged", "drift", "delete", "orphan", "conflict"]
# Actions that send something to the workspace when applied.
WRITES: tuple[Action, ...] = ("create", "update", "adopt", "delete")
CHANGES: tuple[Action, ...] = ("create", "update", "adopt", "delete", "drift")
PLAN_FORMAT = 1


@dataclass(frozen=True)
class DesiredRule:
    """A rule as the build made it: what a deploy would send."""

    rule_id: str
    body: Mapping[str, Any]
    source: str


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class PlannedChange:
    """What happens to one rule, and against which state of the workspace it was planned."""

    rule_id: str
    display_name: str
    action: Action
    source: str | None = None
    # The workspace etag this change was planned against (None: the rule did not exist).
    etag: str | None = None
    body: Mapping[str, Any] | None = None
    fields: tuple[FieldChange, ...] = ()
    query_diff: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Plan:
    environment: str
    target: str
    changes: tuple[PlannedChange, ...]
    prune: bool
    tool_version: str
    source_hash: str

    def counts(self) -> Counter[str]:
        return Counter(change.action for change in self.changes)

    @property
    def has_changes(self) -> bool:
        return any(change.action in CHANGES for change in self.changes)


def make_plan(
    desired: Sequence[DesiredRule],
    remote: Iterable[Mapping[str, Any]],
    *,
    owner: Owner,
    prune: bool,
    target: str,
    tool_version: str,
    source_hash: str,
) -> Plan:
    """Compare the project's rules (all of which built) with the workspace's."""
    current = {str(rule.get("name", "")).lower(): rule for rule in remote}
    wanted = {rule.rule_id.lower(): rule for rule in desired}
    changes = [
        _compare(rule, current.get(key), owner)
        for key, rule in sorted(wanted.items(), key=lambda item: item[1].source)
    ]
    for key, existing in sorted(current.items()):
        leftover = _leftover(existing, owner, prune) if key not in wanted else None
        if leftover is not None:
            changes.append(leftover)
    return Plan(
        environment=owner.environment,
        target=target,
        changes=tuple(changes),
        prune=prune,
        tool_version=tool_version,
        source_hash=source_hash,
    )


def source_hash(paths: Iterable[Path], root: Path) -> str:
    """Hash of the files a plan was made from (rules, their tests, config, templates)."""
    hasher = hashlib.sha256()
    for path in sorted(set(paths)):
        try:
            name = str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            name = str(path)
        hasher.update(name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()


def plans_to_json(plans: Sequence[Plan]) -> dict[str, Any]:
    """The file `plan --out` writes: every environment's plan, with what it was made from."""
    return {"format": PLAN_FORMAT, "plans": [plan_to_json(plan) for plan in plans]}


def plans_from_json(data: Mapping[str, Any]) -> list[Plan]:
    if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
        raise ValueError(f"not a plan file of format {PLAN_FORMAT}")
    return [plan_from_json({"format": PLAN_FORMAT, **plan}) for plan in data["plans"]]


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "format": PLAN_FORMAT,
        "environment": plan.environment,
        "target": plan.target,
        "prune": plan.prune,
        "tool_version": plan.tool_version,
        "source_hash": plan.source_hash,
        "summary": dict(plan.counts()),
        "changes": [
            {
                "rule_id": c.rule_id,
                "display_name": c.display_name,
                "action": c.action,
                "source": c.source,
                "etag": c.etag,
                "note": c.note,
                "fields": [
                    {"path": f.path, "before": f.before, "after": f.after} for f in c.fields
                ],
                "query_diff": c.query_diff,
                "body": c.body,
            }
            for c in plan.changes
        ],
    }


def plan_from_json(data: Mapping[str, Any]) -> Plan:
    """A saved plan; raises ValueError when it is not one this version wrote."""
    if data.get("format") != PLAN_FORMAT:
        raise ValueError(f"not a plan file of format {PLAN_FORMAT}")
    changes = tuple(
        PlannedChange(
            rule_id=str(c["rule_id"]),
            display_name=str(c["display_name"]),
            action=c["action"],
            source=c.get("source"),
            etag=c.get("etag"),
            body=c.get("body"),
            fields=tuple(FieldChange(f["path"], f["before"], f["after"]) for f in c["fields"]),
            query_diff=c.get("query_diff"),
            note=c.get("note"),
        )
        for c in data["changes"]
    )
    return Plan(
        environment=str(data["environment"]),
        target=str(data["target"]),
        changes=changes,
        prune=bool(data["prune"]),
        tool_version=str(data["tool_version"]),
        source_hash=str(data["source_hash"]),
    )


def _compare(rule: DesiredRule, existing: Mapping[str, Any] | None, owner: Owner) -> PlannedChange:
    properties = rule.body.get("properties", {})
    name = str(properties.get("displayName", rule.rule_id))
    if existing is None:
        return PlannedChange(rule.rule_id, name, "create", rule.source, None, rule.body)
    etag = existing.get("etag")
    theirs = existing.get("properties") or {}
    if existing.get("kind") != "Scheduled":
        return PlannedChange(
            rule.rule_id,
            name,
            "conflict",
            rule.source,
            etag,
            note=f"the workspace holds a {existing.get('kind')} rule with this id; a Scheduled "
            "rule cannot replace it: delete it in the workspace or give the Sigma rule a new id",
        )
    fields, query_diff = _differences(theirs, properties)
    marker = read_marker(theirs)

    def change(action: Action, note: str | None = None) -> PlannedChange:
        return PlannedChange(
            rule.rule_id, name, action, rule.source, etag, rule.body, fields, query_diff, note
        )

    if owner.owns(marker):
        assert marker is not None
        if is_drifted(theirs):
            return change(
                "drift",
                "changed in the workspace since it was deployed; deploy overwrites it only "
                "with --overwrite-drift",
            )
        if marker.digest == digest(properties):
            return PlannedChange(rule.rule_id, name, "unchanged", rule.source, etag)
        return change("update")
    if marker is not None:
        return PlannedChange(
            rule.rule_id,
            name,
            "conflict",
            rule.source,
            etag,
            note=f"deployed by project {marker.project}, environment {marker.environment}; "
            "not taken over",
        )
    if digest(theirs) == digest(properties):
        return change("adopt", "same properties; deploying only records this project as owner")
    return change("update", "not deployed by sentinel-deployer; deploying takes it over")


def _leftover(existing: Mapping[str, Any], owner: Owner, prune: bool) -> PlannedChange | None:
    """A workspace rule the project no longer has: deleted only if ours, and only on --prune."""
    properties = existing.get("properties") or {}
    if not owner.owns(read_marker(properties)):
        return None
    name = str(properties.get("displayName", existing.get("name")))
    if prune:
        return PlannedChange(str(existing.get("name")), name, "delete", etag=existing.get("etag"))
    return PlannedChange(
        str(existing.get("name")),
        name,
        "orphan",
        etag=existing.get("etag"),
        note="no longer in the project; --prune deletes it",
    )


def _differences(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[tuple[FieldChange, ...], str | None]:
    old = _flatten(normalize(without_marker(before)))
    new = _flatten(normalize(without_marker(after)))
    changes = tuple(
        FieldChange(path, old.get(path), new.get(path))
        for path in sorted(set(old) | set(new))
        if old.get(path) != new.get(path) and path != "query"
    )
    query_diff = None
    if old.get("query") != new.get("query"):
        # Lines without their ends, joined with one: a last line without a newline would
        # otherwise run into the next line of the diff.
        lines = difflib.unified_diff(
            str(old.get("query") or "").splitlines(),
            str(new.get("query") or "").splitlines(),
            fromfile="workspace",
            tofile="rules",
            lineterm="",
        )
        query_diff = "\n".join(lines) + "\n"
        changes = (FieldChange("query", old.get("query"), new.get("query")), *changes)
    return changes, query_diff


def _flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            flat.update(_flatten(item, path + "."))
        else:
            flat[path] = json.loads(json.dumps(item))
    return flat
