"""Finding rule files, and the checks on their ids that look at the whole set.

Nothing here imports pySigma, so that a build served from its cache never loads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deployer.detection.cases import TESTS_SUFFIX
from deployer.model import Location, Problem

RULE_SUFFIXES = (".yml", ".yaml")
# Native rules (native.py): Scheduled analytics rules already written as ARM templates.
NATIVE_SUFFIX = ".arm.json"
# Files that sit next to rules without being rules: detection test cases.
NOT_RULES = (TESTS_SUFFIX,)


def find_rule_files(paths: Sequence[Path]) -> list[Path]:
    """Rule files under `paths` (files or folders, searched recursively), sorted, unique."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            candidates: Iterable[Path] = (p for p in path.rglob("*") if p.is_file())
        else:
            candidates = [path]
        found.update(p for p in candidates if _is_rule_file(p))
    return sorted(found)


class IdentifiedRule(Protocol):
    """What the duplicate-id check needs of a rule file."""

    @property
    def path(self) -> Path: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    def location(self, key: str | None = None) -> Location: ...


@dataclass(frozen=True)
class RuleIdentity:
    """A rule file's id and title and where the id is: all the whole-set checks need of it."""

    path: Path
    rule_id: str
    title: str
    id_line: int | None = None

    def location(self, key: str | None = None) -> Location:
        return Location(self.path, self.id_line if key == "id" else None)


def duplicate_ids(sources: Sequence[IdentifiedRule]) -> list[Problem]:
    """One error per file whose rule id another file also uses."""
    counts = Counter(source.rule_id.lower() for source in sources)
    problems = []
    for source in sources:
        if counts[source.rule_id.lower()] > 1:
            others = [
                _display(s.path)
                for s in sources
                if s.rule_id.lower() == source.rule_id.lower() and s is not source
            ]
            problems.append(
                Problem(
                    "error",
                    "duplicate-id",
                    f"id {source.rule_id} is also used by {', '.join(others)}; "
                    "give each rule its own UUID",
                    source.location("id"),
                    source.rule_id,
                    source.title,
                )
            )
    return problems


def _is_rule_file(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(NATIVE_SUFFIX):
        return True
    return name.endswith(RULE_SUFFIXES) and not name.endswith(NOT_RULES)


def _display(path: Path) -> str:
    """A path as the user typed it: relative to the working folder where it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
