"""The emulator's state: alert rules per workspace, kept in memory and in `state.json`.

Names compare case-insensitively, as ARM resource names do; the spelling of the first write is
the one the resource keeps. Each change is written to disk atomically before it is answered.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.emulator.resources import Resource, WorkspaceRef

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
_FORMAT = 1


def workspace_key(ref: WorkspaceRef) -> WorkspaceRef:
    """How two spellings of one workspace are recognised as the same."""
    # NOTE: resource group and resource names are compared case-insensitively (ARM resource
    # provider contract, Azure/azure-resource-manager-rpc, v1.0/common-api-details.md).
    subscription, resource_group, workspace = ref
    return subscription.lower(), resource_group.lower(), workspace.lower()


@dataclass
class _Workspace:
    ref: WorkspaceRef
    rules: dict[str, Resource] = field(default_factory=dict)


class Store:
    """Alert rules by workspace; hold `locked()` around a read-modify-write."""

    def __init__(self, state_dir: Path | None) -> None:
        self._path = state_dir / STATE_FILE if state_dir is not None else None
        self._lock = threading.RLock()
        self._workspaces: dict[WorkspaceRef, _Workspace] = {}

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store still, so that a check and the write it allows are one step."""
        with self._lock:
            yield

    def load(self) -> None:
        """Read `state.json`, when there is a state folder and the file exists."""
        if self._path is None or not self._path.is_file():
            return
        data = json.loads(self._path.read_text(encoding="utf-8"))
        workspaces: dict[WorkspaceRef, _Workspace] = {}
        for entry in data.get("workspaces", []):
            ref = (entry["subscription"], entry["resourceGroup"], entry["workspace"])
            rules = {str(rule["name"]).lower(): rule for rule in entry.get("alertRules", [])}
            workspaces[workspace_key(ref)] = _Workspace(ref, rules)
        with self._lock:
            self._workspaces = workspaces
        logger.debug("loaded %d workspaces from %s", len(workspaces), self._path)

    def workspace_ref(self, ref: WorkspaceRef) -> WorkspaceRef:
        """The spelling the workspace was first written with, else `ref` itself."""
        with self._lock:
            found = self._workspaces.get(workspace_key(ref))
            return found.ref if found is not None else ref

    def get(self, ref: WorkspaceRef, rule: str) -> Resource | None:
        """A copy of one stored rule, or None."""
        with self._lock:
            found = self._workspaces.get(workspace_key(ref))
            resource = found.rules.get(rule.lower()) if found is not None else None
            return copy.deepcopy(resource) if resource is not None else None

    def list(self, ref: WorkspaceRef) -> list[Resource]:
        """Copies of a workspace's rules, ordered by name so that paging is stable."""
        with self._lock:
            found = self._workspaces.get(workspace_key(ref))
            if found is None:
                return []
            return [copy.deepcopy(found.rules[key]) for key in sorted(found.rules)]

    def count_enabled(self, ref: WorkspaceRef, kind: str, *, besides: str) -> int:
        """How many enabled rules of `kind` the workspace holds, not counting rule `besides`."""
        with self._lock:
            found = self._workspaces.get(workspace_key(ref))
            if found is None:
                return 0
            return sum(
                1
                for key, rule in found.rules.items()
                if key != besides.lower() and rule.get("kind") == kind and _enabled(rule)
            )

    def put(self, ref: WorkspaceRef, resource: Resource) -> None:
        """Store `resource` under its `name`, then save."""
        with self._lock:
            key = workspace_key(ref)
            workspace = self._workspaces.setdefault(key, _Workspace(ref))
            workspace.rules[str(resource["name"]).lower()] = copy.deepcopy(resource)
            self._save()

    def delete(self, ref: WorkspaceRef, rule: str) -> bool:
        """Remove a rule; whether it was there."""
        with self._lock:
            found = self._workspaces.get(workspace_key(ref))
            if found is None or found.rules.pop(rule.lower(), None) is None:
                return False
            self._save()
            return True

    def _save(self) -> None:
        if self._path is None:
            return
        data: dict[str, Any] = {
            "format": _FORMAT,
            "workspaces": [
                {
                    "subscription": workspace.ref[0],
                    "resourceGroup": workspace.ref[1],
                    "workspace": workspace.ref[2],
                    "alertRules": [workspace.rules[key] for key in sorted(workspace.rules)],
                }
                for _, workspace in sorted(self._workspaces.items())
            ],
        }
        _write_atomically(self._path, json.dumps(data, indent=1) + "\n")


def _enabled(rule: Resource) -> bool:
    properties = rule.get("properties")
    return isinstance(properties, dict) and properties.get("enabled") is True


def _write_atomically(path: Path, text: str) -> None:
    """Write a sibling temporary file and rename it over `path`: a reader sees old or new."""
    # NOTE: no fsync; the rename guards against the emulator dying mid-write, which is the case
    # that matters for a test bed, and an fsync per write would slow bulk tests down.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
