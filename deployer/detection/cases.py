"""The sidecar file `<rule>.tests.yml`: named cases, each one event and an expectation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deployer.model import Location

TESTS_SUFFIX = ".tests.yml"
_EXPECTATIONS = {"match": True, "no match": False}


@dataclass(frozen=True)
class Case:
    """One event and whether the rule must return it."""

    name: str
    expect_match: bool
    event: Mapping[str, Any]
    location: Location
    because: str | None = None


@dataclass(frozen=True)
class RuleCases:
    path: Path
    cases: tuple[Case, ...]


class CasesError(ValueError):
    """A sidecar file that cannot be read as cases; the message names file and line."""


def cases_path(rule_path: Path) -> Path:
    """Where a rule's cases live: `rule.yml` -> `rule.tests.yml`."""
    return rule_path.with_name(rule_path.name.rsplit(".", 1)[0] + TESTS_SUFFIX)


def load_cases(path: Path) -> RuleCases:
    """Read a sidecar file; every problem raises CasesError naming the file and line."""
    try:
        loader = yaml.CSafeLoader(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise CasesError(f"{path}: cannot read the test cases: {error}") from error
    try:
        # One parse gives both the values and the line of each case.
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise CasesError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from error
    finally:
        loader.dispose()
    if not isinstance(data, Mapping) or not isinstance(data.get("cases"), list):
        raise CasesError(f"{path}: expected a mapping with a `cases:` list")
    case_nodes = _case_nodes(node)
    cases = []
    for index, raw in enumerate(data["cases"]):
        line = case_nodes[index] if index < len(case_nodes) else None
        cases.append(_case(raw, Location(path, line), index))
    names = [case.name for case in cases]
    for case in cases:
        if names.count(case.name) > 1:
            raise CasesError(f"{case.location}: case name '{case.name}' is used twice")
    return RuleCases(path, tuple(cases))


def _case(raw: Any, location: Location, index: int) -> Case:
    if not isinstance(raw, Mapping):
        raise CasesError(f"{location}: case {index + 1} is not a mapping")
    unknown = set(raw) - {"name", "expect", "event", "because"}
    if unknown:
        raise CasesError(f"{location}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CasesError(f"{location}: case {index + 1} needs a `name`")
    expect = raw.get("expect")
    if expect not in _EXPECTATIONS:
        raise CasesError(f"{location}: case '{name}': `expect` must be `match` or `no match`")
    event = raw.get("event")
    if not isinstance(event, Mapping) or not event:
        raise CasesError(f"{location}: case '{name}': `event` must map column names to values")
    because = raw.get("because")
    return Case(
        name=name,
        expect_match=_EXPECTATIONS[expect],
        event={str(column): value for column, value in event.items()},
        location=location,
        because=str(because) if because is not None else None,
    )


def _case_nodes(node: yaml.Node | None) -> list[int]:
    """1-based lines of the items of the top-level `cases:` list."""
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if getattr(key, "value", None) == "cases" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []
