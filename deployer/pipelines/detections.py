"""What our processing items share: where a detection is used, its items, the rule's table.

A detection used under `not` must never lose an alternative (the rule would match more);
warnings for the rule's author are kept in the pipeline's state, which convert.py reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
)
from sigma.processing.transformations import Transformation
from sigma.processing.transformations.base import (
    PreprocessingTransformation,
)
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule

# Where our warnings for one rule are kept while the pipeline runs (the pipeline's state is
# reset for every rule); convert.py reads them after the conversion.
WARNINGS_STATE = "sentinel_deployer_warnings"


# --- where a detection is used: plainly or under a `not` -----------------------------------


def negated_detections(rule: SigmaRule) -> frozenset[str]:
    """Names of the detections some condition of the rule uses under an odd number of `not`."""
    detections = rule.detection.detections
    negated: set[str] = set()

    def walk(node: object, negative: bool) -> None:
        if isinstance(node, ConditionIdentifier):
            if negative:
                negated.add(str(node.identifier))
        elif isinstance(node, ConditionSelector):
            if negative:
                for ref in node.resolve_referenced_detections(rule.detection):
                    negated.add(str(ref.identifier))
        elif isinstance(node, ConditionNOT):
            walk(node.args[0], not negative)
        elif isinstance(node, ConditionAND | ConditionOR):
            for arg in node.args:
                walk(arg, negative)

    for condition in rule.detection.parsed_condition:
        walk(condition.parse(postprocess=False), False)
    return frozenset(negated & set(detections))


def alternatives_only(rule: SigmaRule, dropped: set[str]) -> bool:
    """Whether the rule's conditions use each `dropped` detection only as one `or` alternative.

    That is: outside any `not`, directly inside an `or` (or a `1 of` selector) that keeps an
    alternative not dropped. pySigma leaves an emptied detection out of its `or`; inside an
    `and` it would leave it out too, and the rule would match more.
    """
    detections = rule.detection

    def ok(node: object, negative: bool) -> bool:
        if isinstance(node, ConditionIdentifier):
            return str(node.identifier) not in dropped
        if isinstance(node, ConditionSelector):
            names = {str(r.identifier) for r in node.resolve_referenced_detections(detections)}
            if node.cond_class is ConditionOR and not negative:
                return bool(names - dropped)
            return not names & dropped
        if isinstance(node, ConditionNOT):
            return ok(node.args[0], not negative)
        if isinstance(node, ConditionOR) and not negative:
            kept = [
                arg
                for arg in node.args
                if not (isinstance(arg, ConditionIdentifier) and str(arg.identifier) in dropped)
            ]
            return bool(kept) and all(ok(arg, negative) for arg in kept)
        if isinstance(node, ConditionAND | ConditionOR):
            return all(ok(arg, negative) for arg in node.args)
        return True

    return all(ok(c.parse(postprocess=False), False) for c in detections.parsed_condition)


def warn(transformation: Transformation, message: str) -> None:
    assert transformation._pipeline is not None  # set by pySigma before any apply()
    transformation._pipeline.state.setdefault(WARNINGS_STATE, []).append(message)


def detection_items(detection: SigmaDetection) -> Iterator[SigmaDetectionItem]:
    for item in detection.detection_items:
        if isinstance(item, SigmaDetection):
            yield from detection_items(item)
        else:
            yield item


@dataclass
class TableTransformation(PreprocessingTransformation):
    """A transformation that needs the rule's table and that table's columns."""

    pipeline_name: str = ""
    columns_of: Callable[[str], Mapping[str, Mapping[str, str]]] | None = None

    def table(self) -> str | None:
        assert self._pipeline is not None  # set by pySigma before any apply()
        table = self._pipeline.state.get("query_table")
        return table if isinstance(table, str) else None

    def columns(self) -> Mapping[str, str] | None:
        table = self.table()
        if table is None or self.columns_of is None:
            return None
        return self.columns_of(self.pipeline_name).get(table)
