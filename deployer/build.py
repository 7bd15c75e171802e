"""The build: rules folder to validated ARM templates, one result per rule file.

load -> convert -> analytics rule -> render (in memory) -> validate -> write. A rule that fails
at any step gets its reasons and the others go on; nothing is written for a rule with errors.
Native rules (`*.arm.json`, already ARM templates) skip conversion and rendering: they are
validated and written with the ownership line added, like the rest.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from deployer.analytics import RuleInputs, analytics_rule
from deployer.config import DEFAULT_ENVIRONMENT, PIPELINES, ProjectConfig
from deployer.convert import Converter
from deployer.detection.cases import cases_path
from deployer.errors import RuleConversionError, UsageError
from deployer.fingerprint import Owner, with_marker
from deployer.model import AnalyticsRule, Location, Problem, RuleResult
from deployer.native import NativeSource
from deployer.pipelines import table_columns
from deployer.render import RenderedRule, Renderer, add_ownership
from deployer.rules import (
    LoadFailure,
    SigmaSource,
    duplicate_ids,
    find_rule_files,
    load_any,
    sigma_lint,
)
from deployer.validate import (
    NamedRule,
    QueryValidator,
    duplicate_display_names,
    validate_native,
    validate_rule,
)

logger = logging.getLogger(__name__)

SKIPPED_STATUSES = ("deprecated", "unsupported")
_OUTPUT_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json$")


@dataclass(frozen=True)
class BuildRequest:
    """What to build and how: the CLI's options, resolved."""

    paths: tuple[Path, ...] = ()
    out_dir: Path | None = None
    pipeline: str | None = None
    environment: str | None = None


@dataclass(frozen=True)
class _Candidate:
    """A rule that has come through the stages so far."""

    source: SigmaSource
    rule: AnalyticsRule
    rendered: RenderedRule
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class _NativeCandidate:
    """A native rule that has been read and validated, with the ownership line added."""

    native: NativeSource
    document: dict[str, object]
    body: dict[str, object]
    problems: tuple[Problem, ...]

    @property
    def rule_id(self) -> str:
        return self.native.rule_id

    @property
    def display_name(self) -> str:
        return self.native.title

    @property
    def source(self) -> Location:
        return self.native.location()


def run_build(
    config: ProjectConfig,
    request: BuildRequest,
    *,
    queries: QueryValidator | None,
    on_result: Callable[[RuleResult], None] | None = None,
) -> list[RuleResult]:
    """Build (or, with no out_dir, only validate) every rule file the request names."""
    environment = config.environment(request.environment) if request.environment else None
    api_version = (environment and environment.api_version) or config.api_version
    inputs = RuleInputs(
        defaults=config.defaults, overrides=environment.overrides if environment else ()
    )
    stages = _Stages(
        config=config,
        request=request,
        inputs=inputs,
        api_version=api_version,
        renderer=Renderer(config.templates_dir),
        queries=queries,
        converter=Converter(),
        owner=Owner(config.name, environment.name if environment else DEFAULT_ENVIRONMENT),
    )
    files = find_rule_files(_existing(request.paths or (config.rules_dir,)))

    # Load every file first: duplicate ids are a property of the whole set.
    loaded = [load_any(path) for path in files]
    sources = [item for item in loaded if isinstance(item, SigmaSource | NativeSource)]
    duplicates = {p.location.path: p for p in duplicate_ids(sources)}

    results: dict[Path, RuleResult] = {}
    candidates: list[_Candidate] = []
    natives: list[_NativeCandidate] = []
    for item in loaded:
        early = _early_result(item, duplicates, environment.name if environment else None, stages)
        if early is not None:
            results[item.path] = early
        elif isinstance(item, NativeSource):
            natives.append(_read_native(stages, item))
        else:
            assert isinstance(item, SigmaSource)
            outcome = _build_one(stages, item)
            if isinstance(outcome, RuleResult):
                results[item.path] = outcome
            else:
                candidates.append(outcome)

    # Display names must be unique across everything that would reach the workspace.
    named: list[NamedRule] = [*(c.rule for c in candidates), *natives]
    clashes = {p.rule_id: (p,) for p in duplicate_display_names(named)}
    for candidate in candidates:
        problems = (*candidate.problems, *clashes.get(candidate.rule.rule_id, ()))
        results[candidate.source.path] = _finish(candidate, problems, request.out_dir)
    for native in natives:
        problems = (*native.problems, *clashes.get(native.rule_id, ()))
        results[native.native.path] = _finish_native(native, problems, request.out_dir)

    if request.out_dir is not None and not request.paths:
        _remove_stale(
            request.out_dir,
            {r.rule_id for r in results.values() if r.rule_id and r.status in ("built", "valid")},
        )
    ordered = [results[path] for path in files]
    if on_result:
        for result in ordered:
            on_result(result)
    return ordered


@dataclass(frozen=True)
class _Stages:
    """The per-rule stages, with what they share across rules in one run."""

    config: ProjectConfig
    request: BuildRequest
    inputs: RuleInputs
    api_version: str
    renderer: Renderer
    queries: QueryValidator | None
    converter: Converter
    owner: Owner


def _build_one(stages: _Stages, source: SigmaSource) -> RuleResult | _Candidate:
    converter, renderer, api_version = stages.converter, stages.renderer, stages.api_version
    lint = sigma_lint(source)
    if any(p.is_error for p in lint):
        return _failed(source.path, lint, source.rule_id, source.title)
    pipeline = _pipeline(source, stages.request, stages.config)
    if isinstance(pipeline, Problem):
        return _failed(source.path, (pipeline,), source.rule_id, source.title)
    try:
        converted = converter.convert(source.rule, pipeline)
    except RuleConversionError as error:
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
        inputs=replace(stages.inputs, table_columns=tuple(columns)),
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
    rendered = renderer.render(rule, api_version=api_version, owner=stages.owner)
    if not cases_path(source.path).is_file():
        problems += (_no_tests(source, required=stages.config.require_tests),)
    problems += tuple(
        validate_rule(
            rule,
            rendered.request_body(),
            api_version=api_version,
            lines=source.lines,
            queries=stages.queries,
            table_columns=tuple(columns),
        )
    )
    return _Candidate(source, rule, rendered, problems)


def _early_result(
    item: SigmaSource | NativeSource | LoadFailure,
    duplicates: dict[Path, Problem],
    environment: str | None,
    stages: _Stages,
) -> RuleResult | None:
    """The result of a file that stops before conversion: unreadable, duplicate or skipped."""
    if isinstance(item, LoadFailure):
        return _failed(item.path, item.problems, item.rule_id, item.title)
    if item.path in duplicates:
        return _failed(item.path, (duplicates[item.path],), item.rule_id, item.title)
    skipped = _skip_reason(item, environment, stages.config, stages.request)
    if skipped:
        return RuleResult(item.path, "skipped", item.rule_id, item.title, problems=(skipped,))
    return None


def _read_native(stages: _Stages, native: NativeSource) -> _NativeCandidate:
    """A native rule as a deploy sends it: its properties as written, plus the ownership line."""
    document = copy.deepcopy(dict(native.document))
    add_ownership(document, stages.owner, native.rule_id)
    properties = with_marker(native.body["properties"], stages.owner)
    body: dict[str, object] = {"kind": "Scheduled", "properties": properties}
    problems = validate_native(
        body,
        api_version=stages.api_version,
        where=native.location(),
        rule_id=native.rule_id,
        title=native.title,
        queries=stages.queries,
    )
    return _NativeCandidate(native, document, body, tuple(problems))


def _finish_native(
    candidate: _NativeCandidate, problems: tuple[Problem, ...], out_dir: Path | None
) -> RuleResult:
    native = candidate.native
    query = candidate.body["properties"]
    text = query.get("query") if isinstance(query, dict) else None
    if any(p.is_error for p in problems):
        return _failed(native.path, problems, native.rule_id, native.title, text)
    output = None
    if out_dir is not None:
        output = out_dir / f"{native.rule_id}.json"
        rendered = json.dumps(candidate.document, indent=2, ensure_ascii=False) + "\n"
        _write_atomically(output, rendered)
    return RuleResult(
        native.path,
        "built" if output else "valid",
        native.rule_id,
        native.title,
        text if isinstance(text, str) else None,
        output,
        problems,
        body=candidate.body,
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


def _finish(
    candidate: _Candidate, problems: tuple[Problem, ...], out_dir: Path | None
) -> RuleResult:
    source, rule = candidate.source, candidate.rule
    if any(p.is_error for p in problems):
        return _failed(source.path, problems, rule.rule_id, source.title, rule.query)
    # The query exactly as a deploy sends it: from the rendered template, not the model.
    body = candidate.rendered.request_body()
    query = str(body["properties"].get("query", rule.query))
    output = None
    if out_dir is not None:
        output = out_dir / f"{rule.rule_id}.json"
        _write_atomically(output, candidate.rendered.text)
    return RuleResult(
        source.path,
        "built" if output else "valid",
        rule.rule_id,
        source.title,
        query,
        output,
        problems,
        pipeline=rule.pipeline,
        table=rule.table,
        body=body,
    )


def _pipeline(source: SigmaSource, request: BuildRequest, config: ProjectConfig) -> str | Problem:
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
    environment = config.environments.get(request.environment or "")
    return str(request.pipeline or own or (environment and environment.pipeline) or config.pipeline)


def _skip_reason(
    source: SigmaSource | NativeSource,
    environment: str | None,
    config: ProjectConfig,
    request: BuildRequest,
) -> Problem | None:
    status = source.metadata.status if isinstance(source, SigmaSource) else None
    reason = None
    if status in SKIPPED_STATUSES:
        reason = f"skipped: the rule's status is {status}"
    elif environment is not None:
        env = config.environments[environment]
        if env.include and source.rule_id not in env.include:
            reason = f"skipped: not in environments.{environment}.include"
        elif source.rule_id in env.exclude:
            reason = f"skipped: in environments.{environment}.exclude"
    if reason is None:
        return None
    return Problem(
        "warning", "skipped", reason, source.location("status"), source.rule_id, source.title
    )


def _failed(
    path: Path,
    problems: Sequence[Problem],
    rule_id: str | None,
    title: str | None,
    query: str | None = None,
) -> RuleResult:
    return RuleResult(path, "failed", rule_id, title, query, None, tuple(problems))


def _existing(paths: Sequence[Path]) -> list[Path]:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    return list(paths)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Templates of rules that no longer build would mislead a reviewer reading build/."""
    if not out_dir.is_dir():
        return
    for path in out_dir.iterdir():
        if _OUTPUT_NAME.match(path.name) and path.stem not in keep:
            logger.info("removing %s: no rule builds it any more", path)
            path.unlink()
