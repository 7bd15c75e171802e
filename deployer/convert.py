"""Sigma to KQL, one rule at a time, with pySigma-backend-kusto and a named pipeline.

Each rule is converted on its own so that one rule's failure is that rule's result and never
the run's: sigma-cli converts a whole collection and aborts on the first surprise.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sigma.backends.kusto.kusto import KustoBackend
from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionOR
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.types import SigmaNumber

from deployer.errors import RuleConversionError
from deployer.model import ConvertedRule
from deployer.pipelines import backend_pipeline, processing_pipeline
from deployer.pipelines.detections import WARNINGS_STATE

logger = logging.getLogger(__name__)

_TABLE = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(?:\n|\||$)")
# The longest flat `or` chain we emit; longer chains are nested in groups of this many.
# Kusto.Language stops analysing a query nested deeper than 500 (KS245), and parses a flat chain
# of n terms n deep; grouped, 1,000 terms are 2 levels of at most 64.
OR_CHAIN = 64
_NO_TABLE = "Unable to determine table name from rule"


class FaithfulKustoBackend(KustoBackend):
    """KustoBackend with numbers kept numbers in lists and long `or` chains nested.

    Upstream-worthy, both: KustoBackend writes every list as `in~`, which Kusto defines for
    strings only (KS107 on a long column), and flat `or` chains only.
    """

    def convert_condition_as_in_expression(
        self, cond: ConditionOR | ConditionAND, state: ConversionState
    ) -> Any:
        args = [arg for arg in cond.args if isinstance(arg, ConditionFieldEqualsValueExpression)]
        values = [arg.value for arg in args]
        if not isinstance(cond, ConditionOR):
            return super().convert_condition_as_in_expression(cond, state)
        if (
            values
            and len(values) == len(cond.args)
            and all(isinstance(value, SigmaNumber) for value in values)
        ):
            field = self.escape_and_quote_field(args[0].field)
            return f"{field} in ({', '.join(str(value) for value in values)})"
        # The backend joins a list's wildcard values (contains, endswith...) with `or`, flat.
        return _in_groups(cond, state, super().convert_condition_as_in_expression)

    def convert_condition_or(self, cond: ConditionOR, state: ConversionState) -> Any:
        return _in_groups(cond, state, super().convert_condition_or)


def _in_groups(
    cond: ConditionOR,
    state: ConversionState,
    convert: Callable[[ConditionOR, ConversionState], Any],
) -> Any:
    """`convert` of the `or` as it is, or of its terms in groups of OR_CHAIN, nested."""
    if len(cond.args) <= OR_CHAIN:
        return convert(cond, state)
    return _nested(
        str(convert(ConditionOR(cond.args[at : at + OR_CHAIN]), state))
        for at in range(0, len(cond.args), OR_CHAIN)
    )


def _nested(groups: Iterable[str]) -> str:
    """`(g1) or (g2) ...`, itself grouped again while there are more than OR_CHAIN groups."""
    texts = [f"({group})" for group in groups]
    while len(texts) > OR_CHAIN:
        texts = [
            f"({' or '.join(texts[at : at + OR_CHAIN])})" for at in range(0, len(texts), OR_CHAIN)
        ]
    return " or ".join(texts)


@dataclass
class Converter:
    """Converts rules with one backend per pipeline, created on first use and reused.

    `bare=True` converts with the backend and its pipelines as they ship, without our fixes
    (scripts/fidelity.py measures the difference).
    """

    bare: bool = False
    _backends: dict[str, KustoBackend] = field(default_factory=dict)

    def convert(self, rule: SigmaRule, pipeline: str) -> ConvertedRule:
        """The rule's query for `pipeline`, or RuleConversionError with a one-line reason."""
        backend = self._backend(pipeline)
        try:
            queries = backend.convert_rule(rule)
        except SigmaError as error:
            raise RuleConversionError(_sigma_reason(error, rule, pipeline)) from error
        # This step and the CLI are the only places that catch every exception: pySigma and the
        # backend raise plain KeyError, TypeError, AttributeError... on rules they do not expect
        # (sigma-cli aborts a whole run on those). Here any of them is one rule's failure, with
        # its type and message kept, and the other rules go on.
        except Exception as error:
            raise RuleConversionError(
                f"the kusto backend failed on this rule ({type(error).__name__}: {error})"
            ) from error

        if not queries:
            raise RuleConversionError("the kusto backend converted the rule to nothing")
        if len(queries) > 1:
            raise RuleConversionError(
                f"the rule converts to {len(queries)} queries; an analytics rule holds one"
            )
        query = str(queries[0])
        if not query.strip():
            raise RuleConversionError("the kusto backend converted the rule to an empty query")
        # Queries are text files: they end with one newline, as the expected seed query does.
        query = query.rstrip("\n") + "\n"
        match = _TABLE.match(query)
        state = backend.last_processing_pipeline.state
        return ConvertedRule(
            query=query,
            pipeline=pipeline,
            table=match.group(1) if match else None,
            warnings=tuple(state.get(WARNINGS_STATE, ())),
        )

    def _backend(self, pipeline: str) -> KustoBackend:
        backend = self._backends.get(pipeline)
        if backend is None:
            backend = (
                KustoBackend(backend_pipeline(pipeline))
                if self.bare
                else FaithfulKustoBackend(processing_pipeline(pipeline))
            )
            self._backends[pipeline] = backend
        return backend


def _sigma_reason(error: SigmaError, rule: SigmaRule, pipeline: str) -> str:
    # pySigma appends " in <absolute path>" when it knows the source; we name the file ourselves.
    message = str(error.args[0]) if error.args else type(error).__name__
    if message.startswith(_NO_TABLE):
        # The backend's own message is a page of how tables are chosen; name the log source.
        source = rule.logsource
        parts = [
            f"{key}: {value}"
            for key, value in (
                ("category", source.category),
                ("product", source.product),
                ("service", source.service),
            )
            if value
        ]
        return f"log source ({', '.join(parts) or 'none'}) has no table in the {pipeline} pipeline"
    return " ".join(message.split())
