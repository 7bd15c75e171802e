"""Sigma to KQL, one rule at a time, with pySigma-backend-kusto and a named pipeline.

Each rule is converted on its own so that one rule's failure is that rule's result and never
the run's: sigma-cli converts a whole collection and aborts on the first surprise.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from sigma.backends.kusto.kusto import KustoBackend
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from deployer.errors import RuleConversionError
from deployer.model import ConvertedRule
from deployer.pipelines import processing_pipeline

logger = logging.getLogger(__name__)

_TABLE = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(?:\n|\||$)")


@dataclass
class Converter:
    """Converts rules with one backend per pipeline, created on first use and reused."""

    _backends: dict[str, KustoBackend] = field(default_factory=dict)

    def convert(self, rule: SigmaRule, pipeline: str) -> ConvertedRule:
        """The rule's query for `pipeline`, or RuleConversionError with a one-line reason."""
        backend = self._backend(pipeline)
        try:
            queries = backend.convert_rule(rule)
        except SigmaError as error:
            raise RuleConversionError(_sigma_reason(error)) from error
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
        return ConvertedRule(
            query=query, pipeline=pipeline, table=match.group(1) if match else None
        )

    def _backend(self, pipeline: str) -> KustoBackend:
        backend = self._backends.get(pipeline)
        if backend is None:
            backend = KustoBackend(processing_pipeline(pipeline))
            self._backends[pipeline] = backend
        return backend


def _sigma_reason(error: SigmaError) -> str:
    # pySigma appends " in <absolute path>" when it knows the source; we name the file ourselves.
    message = str(error.args[0]) if error.args else type(error).__name__
    return " ".join(message.split())
