"""One Sigma rule file through load, convert, analytics rule, render and validate.

What a build worker runs for each file (in a worker process or in the build's own); it
returns a `RuleOutcome` (outcome.py). Whole-set checks and writing stay with the build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from deployer.analytics import analytics_rule
from deployer.config import PIPELINES
from deployer.convert import Converter
from deployer.detection.cases import cases_path
from deployer.errors import RuleConversionError
from deployer.model import Problem, RuleResult
from deployer.outcome import BuildSettings, BuiltRule, RuleOutcome, skip_reason
from deployer.pipelines import table_columns
from deployer.render import Renderer
from deployer.rules import LoadFailure, SigmaSource, identity, load_rule, sigma_lint
from deployer.validate import validate_rule


@dataclass
class RuleBuilder:
    """Builds rule files with the settings of one run; the backends and template are reused."""

    settings: BuildSettings
    converter: Converter = field(default_factory=Converter)
    renderer: Renderer | None = None

    def build(self, path: Path) -> RuleOutcome:
        loaded = load_rule(path)
        if isinstance(loaded, LoadFailure):
            failed = _failed(path, loaded.problems, loaded.rule_id, loaded.title)
            return RuleOutcome(path, None, result=failed)
        who = identity(loaded)
        skipped = skip_reason(loaded, loaded.metadata.status, self.settings)
        if skipped is not None:
            result = RuleResult(path, "skipped", who.rule_id, who.title, problems=(skipped,))
            return RuleOutcome(path, who, result=result)
        built = self._stages(loaded)
        if isinstance(built, RuleResult):
            return RuleOutcome(path, who, result=built)
        return RuleOutcome(path, who, built=built)

    def _stages(self, source: SigmaSource) -> RuleResult | BuiltRule:
        settings = self.settings
        lint = sigma_lint(source)
        if any(p.is_error for p in lint):
            return _failed(source.path, lint, source.rule_id, source.title)
        pipeline = rule_pipeline(source, settings)
        if isinstance(pipeline, Problem):
            return _failed(source.path, (pipeline,), source.rule_id, source.title)
        try:
            converted = self.converter.convert(source.rule, pipeline)
        except RuleConversionError as error:
            # NOTE: a backend that failed is not reused. pySigma-backend-kusto 1.0.1's
            # InvalidFieldTransformation prepends to its own message on every failure
            # (sigma/pipelines/kusto_common/errors.py), so a reused backend's reasons grow
            # with the rules before it, and a rule's outcome would depend on the order rules
            # are converted in, which workers and the cache may not keep.
            self.converter = Converter()
            problem = Problem(
                "error",
                "convert",
                f"cannot convert with the {pipeline} pipeline: {error}",
                source.location("detection"),
                source.rule_id,
                source.title,
            )
            return _failed(source.path, (problem,), source.rule_id, source.title)

        columns = table_columns(pipeline).get(converted.table or "", {})
        rule, problems = analytics_rule(
            source.metadata,
            converted,
            sentinel=source.sentinel,
            inputs=replace(settings.inputs, table_columns=tuple(columns)),
            source=source.location(),
            lines=source.lines,
        )
        # What our pipeline items changed in the rule's meaning (an alternative dropped).
        problems = (
            lint
            + problems
            + tuple(
                Problem(
                    "warning",
                    "convert",
                    f"{pipeline} pipeline: {warning}",
                    source.location("detection"),
                    source.rule_id,
                    source.title,
                )
                for warning in converted.warnings
            )
        )
        if rule is None:
            return _failed(source.path, problems, source.rule_id, source.title, converted.query)
        if self.renderer is None:
            self.renderer = Renderer(settings.config.templates_dir)
        rendered = self.renderer.render(
            rule, api_version=settings.api_version, owner=settings.owner
        )
        if not cases_path(source.path).is_file():
            problems += (_no_tests(source, required=settings.config.require_tests),)
        body = rendered.request_body()
        # Queries are checked with Kusto.Language by the build, after this (kql_checked).
        problems += tuple(
            validate_rule(
                rule,
                body,
                api_version=settings.api_version,
                lines=source.lines,
                queries=None,
                table_columns=tuple(columns),
            )
        )
        return BuiltRule(
            display_name=rule.display_name,
            query=rule.query,
            # The query exactly as a deploy sends it: from the rendered template, not the model.
            sent_query=str(body["properties"].get("query", rule.query)),
            pipeline=rule.pipeline,
            table=rule.table,
            text=rendered.text,
            body=body,
            problems=problems,
            detection_line=source.lines.get("detection"),
        )


def rule_pipeline(source: SigmaSource, settings: BuildSettings) -> str | Problem:
    """--pipeline, else the rule's `sentinel.pipeline`, else the environment's, else the
    project's."""
    own = source.sentinel.get("pipeline")
    if own is not None and own not in PIPELINES:
        return Problem(
            "error",
            "sentinel",
            f"sentinel.pipeline: {own!r} is not one of {', '.join(PIPELINES)}",
            source.location("sentinel"),
            source.rule_id,
            source.title,
        )
    config = settings.config
    environment = config.environments.get(settings.environment or "")
    return str(
        settings.pipeline or own or (environment and environment.pipeline) or config.pipeline
    )


def _no_tests(source: SigmaSource, *, required: bool) -> Problem:
    return Problem(
        "error" if required else "warning",
        "no-tests",
        f"no detection tests: add {cases_path(source.path).name} with events that must and must "
        "not match (see the README, Detection tests)",
        source.location(),
        source.rule_id,
        source.title,
    )


def _failed(
    path: Path,
    problems: Sequence[Problem],
    rule_id: str | None,
    title: str | None,
    query: str | None = None,
) -> RuleResult:
    return RuleResult(path, "failed", rule_id, title, query, None, tuple(problems))
