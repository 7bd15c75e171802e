"""Finding and loading Sigma rule files: one file, one rule, with source lines kept.

Every problem with a file becomes a `Problem` naming the file and, where known, the line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.rule import SigmaDetectionItem, SigmaRule
from sigma.rule.base import SigmaYAMLLoader
from sigma.validators.base import SigmaRuleValidator, SigmaValidationIssueSeverity
from sigma.validators.core import validators as core_validators

from deployer.model import Location, Problem, RuleMetadata
from deployer.native import NativeSource, is_native, load_native
from deployer.sources import (
    RULE_SUFFIXES,
    IdentifiedRule,
    RuleIdentity,
    duplicate_ids,
    find_rule_files,
)

logger = logging.getLogger(__name__)

# Finding files and the duplicate-id check need no pySigma; they live in sources.py.
__all__ = [
    "RULE_SUFFIXES",
    "IdentifiedRule",
    "LoadFailure",
    "RuleIdentity",
    "SigmaSource",
    "duplicate_ids",
    "find_rule_files",
    "identity",
    "load_any",
    "load_rule",
    "sigma_lint",
]


# Which top-level key a pySigma error is about, to point at its line.
_ERROR_KEYS: Mapping[str, str] = {
    "SigmaIdentifierError": "id",
    "SigmaTitleError": "title",
    "SigmaStatusError": "status",
    "SigmaLevelError": "level",
    "SigmaDateError": "date",
    "SigmaModifiedError": "modified",
    "SigmaTagError": "tags",
    "SigmaLogsourceError": "logsource",
    "SigmaReferencesError": "references",
    "SigmaFalsePositivesError": "falsepositives",
    "SigmaDescriptionError": "description",
    "SigmaAuthorError": "author",
    "SigmaRelatedError": "related",
}


@dataclass(frozen=True)
class SigmaSource:
    """A rule file that pySigma could read, with what later stages need to point at it."""

    path: Path
    rule: SigmaRule
    metadata: RuleMetadata
    # 1-based line of each top-level key, for messages.
    lines: Mapping[str, int]
    # The rule's own `sentinel:` block (pySigma keeps unknown top-level keys as custom
    # attributes); empty when absent.
    sentinel: Mapping[str, Any]

    @property
    def rule_id(self) -> str:
        return self.metadata.rule_id

    @property
    def title(self) -> str:
        return self.metadata.title

    def location(self, key: str | None = None) -> Location:
        return Location(self.path, self.lines.get(key) if key else None)


@dataclass(frozen=True)
class LoadFailure:
    """A file that is no usable rule, and why."""

    path: Path
    problems: tuple[Problem, ...]
    title: str | None = None
    rule_id: str | None = None


def load_any(path: Path) -> SigmaSource | NativeSource | LoadFailure:
    """A Sigma rule, or a native rule (`*.arm.json`, already written as an ARM template)."""
    if not is_native(path):
        return load_rule(path)
    loaded = load_native(path)
    if isinstance(loaded, NativeSource):
        return loaded
    first = loaded[0] if loaded else None
    return LoadFailure(
        path, loaded, first.title if first else None, first.rule_id if first else None
    )


def load_rule(path: Path) -> SigmaSource | LoadFailure:
    """Parse one file into a Sigma rule; every problem found is returned, not raised."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return _failure(path, None, f"cannot read the file: {error}", "read")
    try:
        data, lines = _parse_yaml(text)
    except yaml.YAMLError as error:
        return _failure(path, _yaml_line(error), f"not valid YAML: {_yaml_reason(error)}", "yaml")
    except _NotOneRuleError as error:
        return _failure(path, None, str(error), "yaml")

    problems = _shape_problems(path, data, lines)
    if problems:
        return LoadFailure(path, problems, _text(data.get("title")), _text(data.get("id")))
    rule = SigmaRule.from_dict(data, collect_errors=True, source=SigmaRuleLocation(path))
    title = str(data.get("title", ""))
    rule_id = str(data["id"])
    problems = tuple(_sigma_problem(path, lines, error, title, rule_id) for error in rule.errors)
    if problems:
        return LoadFailure(path, problems, title, rule_id)

    sentinel = rule.custom_attributes.get("sentinel") or {}
    if not isinstance(sentinel, Mapping):
        problem = Problem(
            "error",
            "sentinel",
            "the `sentinel:` block must be a mapping of settings",
            Location(path, lines.get("sentinel")),
            rule_id,
            title,
        )
        return LoadFailure(path, (problem,), title, rule_id)
    # The id as pySigma parsed it (a UUID), in its canonical lower-case form.
    canonical_id = str(rule.id) if rule.id else rule_id
    return SigmaSource(path, rule, _metadata(rule, canonical_id, title), lines, sentinel)


# pySigma validators that look at one rule and need no downloaded data (the ATT&CK and D3FEND
# tag validators fetch MITRE data at run time; the uniqueness ones compare whole collections,
# which duplicate_ids does here with file names).
SIGMA_VALIDATORS = (
    "all_of_them_condition",
    "control_character",
    "custom_attributes",
    "dangling_condition",
    "dangling_detection",
    "double_wildcard",
    "duplicate_references",
    "duplicate_tag",
    "escaped_wildcard",
    "fieldname_logsource",
    "identifier_existence",
    "invalid_modifier_combinations",
    "namespace_tag",
    "number_as_string",
    "specific_instead_of_generic_logsource",
    "tag_format",
    "them_condition_with_single_detection",
    "wildcards_instead_of_modifiers",
)


def sigma_lint(source: SigmaSource) -> tuple[Problem, ...]:
    """pySigma's own checks of one rule: high-severity issues are errors (pySigma: "the rule
    logic deviates from the author's intention"), the rest warnings."""
    problems = []
    for validator in _validators():
        for issue in validator.validate(source.rule):
            details = ", ".join(
                f"{name}: {_brief(value)}" for name, value in vars(issue).items() if name != "rules"
            )
            high = issue.severity is SigmaValidationIssueSeverity.HIGH
            message = f"{issue.description}" + (f" ({details})" if details else "")
            problems.append(
                Problem(
                    "error" if high else "warning",
                    "sigma-lint",
                    " ".join(message.split()),
                    source.location("detection"),
                    source.rule_id,
                    source.title,
                )
            )
    return tuple(problems)


def identity(source: SigmaSource | NativeSource) -> RuleIdentity:
    return RuleIdentity(source.path, source.rule_id, source.title, source.location("id").line)


@cache
def _validators() -> tuple[SigmaRuleValidator, ...]:
    return tuple(core_validators[name]() for name in SIGMA_VALIDATORS)


class _NotOneRuleError(ValueError):
    pass


class _RuleLoader(SigmaYAMLLoader):
    """pySigma's loader (C speed, duplicate keys refused), but the refusal carries its line."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str) -> tuple[dict[str, Any], dict[str, int]]:
    """One parse gives both the data (with pySigma's duplicate-key check) and key lines."""
    loader = _RuleLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _NotOneRuleError("the file is empty; one Sigma rule per file is expected")
        data = loader.construct_document(node)
    except yaml.composer.ComposerError as error:
        if "expected a single document" in str(error):
            raise _NotOneRuleError(
                "the file holds several YAML documents; put one Sigma rule in each file"
            ) from error
        raise
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise _NotOneRuleError("the file is not a YAML mapping, so it is no Sigma rule")
    lines = {
        str(key.value): key.start_mark.line + 1
        for key, _ in node.value
        if isinstance(key, yaml.ScalarNode)
    }
    return data, lines


def _shape_problems(
    path: Path, data: Mapping[str, Any], lines: Mapping[str, int]
) -> tuple[Problem, ...]:
    """What makes a file no single detection rule, before pySigma looks at it."""
    title, rule_id = _text(data.get("title")), _text(data.get("id"))
    problems = []
    for key in ("action", "correlation", "filter"):
        if key in data:
            problems.append(
                Problem(
                    "error",
                    "not-a-rule",
                    f"Sigma `{key}` documents are not supported; one detection rule per file",
                    Location(path, lines.get(key)),
                    rule_id,
                    title,
                )
            )
    if not rule_id:
        problems.append(
            Problem(
                "error",
                "no-id",
                "the rule has no `id`: add a UUID (e.g. from `uuidgen`); it becomes the "
                "analytics rule's name in Sentinel and must never change",
                Location(path, 1),
                None,
                title,
            )
        )
    for key in ("title", "detection", "logsource"):
        if key not in data:
            problems.append(
                Problem(
                    "error",
                    "missing",
                    f"the rule has no `{key}`",
                    Location(path, 1),
                    rule_id,
                    title,
                )
            )
    return tuple(problems)


def _sigma_problem(
    path: Path, lines: Mapping[str, int], error: SigmaError, title: str, rule_id: str
) -> Problem:
    key = _ERROR_KEYS.get(type(error).__name__, "detection")
    # pySigma appends " in <absolute path>" to its messages; we name the file ourselves.
    message = str(error.args[0]) if error.args else type(error).__name__
    return Problem(
        "error", "sigma", f"{message} ({key})", Location(path, lines.get(key)), rule_id, title
    )


def _brief(value: Any) -> str:
    """An issue detail in a few words: a detection item by its field, not its whole repr."""
    if isinstance(value, SigmaDetectionItem):
        modifiers = "".join(
            f"|{m.__name__.removeprefix('Sigma').removesuffix('Modifier').lower()}"
            for m in value.modifiers
        )
        return f"{value.field or 'keywords'}{modifiers}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _metadata(rule: SigmaRule, rule_id: str, title: str) -> RuleMetadata:
    return RuleMetadata(
        rule_id=rule_id,
        title=title,
        description=rule.description or "",
        status=rule.status.name.lower() if rule.status else None,
        level=rule.level.name.lower() if rule.level else None,
        tags=tuple(str(tag) for tag in rule.tags),
        references=tuple(str(ref) for ref in rule.references),
        falsepositives=tuple(str(fp) for fp in rule.falsepositives),
        author=rule.author,
    )


def _failure(path: Path, line: int | None, message: str, code: str) -> LoadFailure:
    return LoadFailure(path, (Problem("error", code, message, Location(path, line)),))


def _yaml_line(error: yaml.YAMLError) -> int | None:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return mark.line + 1 if mark is not None else None


def _yaml_reason(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    return str(problem) if problem else str(error).splitlines()[0]


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
