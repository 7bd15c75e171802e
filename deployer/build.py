"""The build: rules folder to validated ARM templates, one result per rule file.

load -> convert -> analytics rule -> render (in memory) -> validate -> write. A rule that fails
at any step gets its reasons and the others go on; nothing is written for a rule with errors.
Sigma rules go through those steps in worker processes (workers.py, rulebuild.py) unless the
build cache (cache.py) already holds their outcome; their queries are checked with
Kusto.Language here, meanwhile. Native rules (`*.arm.json`, already ARM templates) skip
conversion and rendering: they are validated and written with the ownership line added.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from deployer.analytics import RuleInputs
from deployer.cache import CACHE_DIR, BuildCache, rule_key, run_key, tool_digest
from deployer.config import DEFAULT_ENVIRONMENT, ProjectConfig
from deployer.detection.cases import cases_path
from deployer.errors import UsageError
from deployer.fingerprint import Owner, with_marker
from deployer.kql import package_version
from deployer.model import Location, Problem, RuleResult
from deployer.native import NativeSource, is_native, load_native
from deployer.outcome import BuildSettings, BuiltRule, RuleOutcome, skip_reason
from deployer.render import Renderer, add_ownership, default_templates_dir
from deployer.sources import RuleIdentity, duplicate_ids, find_rule_files
from deployer.validate import (
    NamedRule,
    QueryValidator,
    duplicate_display_names,
    query_problems,
    validate_native,
)
from deployer.workers import MIN_RULES_PER_WORKER, BuildWorkers

logger = logging.getLogger(__name__)

_OUTPUT_NAME = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.json$")


@dataclass(frozen=True)
class BuildRequest:
    """What to build and how: the CLI's options, resolved."""

    paths: tuple[Path, ...] = ()
    out_dir: Path | None = None
    pipeline: str | None = None
    environment: str | None = None
    # Worker processes for conversion; None: the CPUs this process may use, at most 4.
    jobs: int | None = None
    # Serve unchanged rules from `.sentinel-deployer/cache/` and keep new outcomes there.
    use_cache: bool = True


@dataclass(frozen=True)
class _Named:
    """A rule as the display-name check sees it."""

    rule_id: str
    display_name: str
    source: Location


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
    workers: BuildWorkers | None = None,
) -> list[RuleResult]:
    """Build (or, with no out_dir, only validate) every rule file the request names.

    `workers` lets several builds of one command share worker processes; without it the
    build starts its own when it has enough rules to convert.
    """
    settings = _settings(config, request)
    files = find_rule_files(_existing(request.paths or (config.rules_dir,)))
    sigma = [path for path in files if not is_native(path)]

    outcomes = dict(_outcomes(config, request, settings, sigma, queries=queries, workers=workers))
    natives = [_read_native(path, settings, queries) for path in files if is_native(path)]
    results = _whole_set(files, outcomes, natives, request.out_dir)

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


def _whole_set(
    files: Sequence[Path],
    outcomes: Mapping[Path, RuleOutcome],
    natives: Sequence[tuple[Path, RuleIdentity | None, _NativeCandidate | RuleResult]],
    out_dir: Path | None,
) -> dict[Path, RuleResult]:
    """Every file's result once the checks across files are done; writes the templates."""

    # Duplicate ids are a property of the whole set, skipped rules included.
    identities: dict[Path, RuleIdentity] = {
        path: item.identity for path, item in outcomes.items() if item.identity is not None
    }
    for path, who, _ in natives:
        if who is not None:
            identities[path] = who
    ordered_ids = [identities[path] for path in files if path in identities]
    duplicates = {p.location.path: p for p in duplicate_ids(ordered_ids)}

    results: dict[Path, RuleResult] = {}
    built: dict[Path, BuiltRule] = {}
    for path, item in outcomes.items():
        if path in duplicates:
            results[path] = _failed(path, (duplicates[path],), item.identity)
        elif item.result is not None:
            results[path] = item.result
        else:
            assert item.built is not None
            built[path] = item.built
    candidates: list[_NativeCandidate] = []
    for path, who, native in natives:
        if path in duplicates:
            results[path] = _failed(path, (duplicates[path],), who)
        elif isinstance(native, RuleResult):
            results[path] = native
        else:
            candidates.append(native)

    # Display names must be unique across everything that would reach the workspace.
    named: list[NamedRule] = [
        *(_Named(identities[p].rule_id, b.display_name, Location(p)) for p, b in built.items()),
        *candidates,
    ]
    clashes = {p.rule_id: (p,) for p in duplicate_display_names(named)}
    for path, rule in built.items():
        who = identities[path]
        problems = (*rule.problems, *clashes.get(who.rule_id, ()))
        results[path] = _finish(path, who, rule, problems, out_dir)
    for native in candidates:
        problems = (*native.problems, *clashes.get(native.rule_id, ()))
        results[native.native.path] = _finish_native(native, problems, out_dir)
    return results


def _settings(config: ProjectConfig, request: BuildRequest) -> BuildSettings:
    environment = config.environment(request.environment) if request.environment else None
    inputs = RuleInputs(
        defaults=config.defaults, overrides=environment.overrides if environment else ()
    )
    return BuildSettings(
        config=config,
        api_version=(environment and environment.api_version) or config.api_version,
        inputs=inputs,
        owner=Owner(config.name, environment.name if environment else DEFAULT_ENVIRONMENT),
        pipeline=request.pipeline,
        environment=environment.name if environment else None,
    )


def _outcomes(
    config: ProjectConfig,
    request: BuildRequest,
    settings: BuildSettings,
    paths: Sequence[Path],
    *,
    queries: QueryValidator | None,
    workers: BuildWorkers | None,
) -> Iterator[tuple[Path, RuleOutcome]]:
    """Each Sigma file's outcome, its query checked: from the cache, else built now."""
    cache = None
    keys: dict[Path, str | None] = dict.fromkeys(paths)
    if request.use_cache:
        shared = _run_key(config, settings, queries)
        cache = BuildCache(config.root / CACHE_DIR, shared)
        keys = {p: rule_key(shared, p, has_tests=cases_path(p).is_file()) for p in paths}
    missing = []
    for path in paths:
        hit = _cached(cache, keys[path], path, queries)
        if hit is None:
            missing.append(path)
        else:
            yield path, hit
    if missing:
        yield from _built(
            config,
            request,
            settings,
            missing,
            keys=keys,
            cache=cache,
            queries=queries,
            workers=workers,
        )
    if cache is not None:
        cache.close()
        logger.info("build cache: %d rule(s) from cache, %d built", cache.hits, cache.misses)


def _cached(
    cache: BuildCache | None, key: str | None, path: Path, queries: QueryValidator | None
) -> RuleOutcome | None:
    hit = cache.get(key, path) if cache is not None and key is not None else None
    if hit is not None and queries is not None and hit.built and not hit.built.kql_checked:
        return None
    return hit


def _built(
    config: ProjectConfig,
    request: BuildRequest,
    settings: BuildSettings,
    missing: Sequence[Path],
    *,
    keys: Mapping[Path, str | None],
    cache: BuildCache | None,
    queries: QueryValidator | None,
    workers: BuildWorkers | None,
) -> Iterator[tuple[Path, RuleOutcome]]:
    """Rules built now: converted by the workers, their queries checked here meanwhile."""
    # A broken templates folder stops the run before any rule is looked at.
    Renderer(config.templates_dir)
    pool = workers or BuildWorkers(request.jobs)
    # Workers first: a forked worker should not inherit Kusto.Language's threads.
    if len(missing) >= MIN_RULES_PER_WORKER:
        pool.start()
    if queries is not None:
        queries.start()
    try:
        for outcome in pool.build(settings, missing):
            checked = _with_query_problems(outcome, queries)
            key = keys[outcome.path]
            if cache is not None and key is not None:
                cache.put(key, checked)
            yield outcome.path, checked
    finally:
        if workers is None:
            pool.close()


def _run_key(config: ProjectConfig, settings: BuildSettings, queries: QueryValidator | None) -> str:
    templates = config.templates_dir or default_templates_dir()
    files = sorted(p for p in templates.rglob("*") if p.is_file()) if templates.is_dir() else []
    if config.path is not None:
        files.insert(0, config.path)
    kql = None
    if queries is not None:
        kql = f"Kusto.Language {package_version() or 'unknown'}"
    return run_key(settings.digest(), files, kql=kql, tool=tool_digest())


def _with_query_problems(outcome: RuleOutcome, queries: QueryValidator | None) -> RuleOutcome:
    """The outcome with Kusto.Language's findings about its query, the last per-rule check."""
    built = outcome.built
    if queries is None or built is None or built.kql_checked or outcome.identity is None:
        return outcome
    found = query_problems(
        built.query,
        built.pipeline,
        queries,
        where=Location(outcome.path, built.detection_line),
        rule_id=outcome.identity.rule_id,
        title=built.display_name,
    )
    checked = replace(built, problems=(*built.problems, *found), kql_checked=True)
    return replace(outcome, built=checked)


def _read_native(
    path: Path, settings: BuildSettings, queries: QueryValidator | None
) -> tuple[Path, RuleIdentity | None, _NativeCandidate | RuleResult]:
    """A native rule as a deploy sends it: its properties as written, plus the ownership line;
    or the result of a file that stops early (unreadable or skipped)."""
    native = load_native(path)
    if not isinstance(native, NativeSource):
        first = native[0] if native else None
        rule_id, title = (first.rule_id, first.title) if first else (None, None)
        return path, None, RuleResult(path, "failed", rule_id, title, problems=native)
    who = RuleIdentity(path, native.rule_id, native.title)
    skipped = skip_reason(native, None, settings)
    if skipped is not None:
        result = RuleResult(path, "skipped", native.rule_id, native.title, problems=(skipped,))
        return path, who, result
    document = copy.deepcopy(dict(native.document))
    add_ownership(document, settings.owner, native.rule_id)
    properties = with_marker(native.body["properties"], settings.owner)
    body: dict[str, object] = {"kind": "Scheduled", "properties": properties}
    problems = validate_native(
        body,
        api_version=settings.api_version,
        where=native.location(),
        rule_id=native.rule_id,
        title=native.title,
        queries=queries,
    )
    return path, who, _NativeCandidate(native, document, body, tuple(problems))


def _finish_native(
    candidate: _NativeCandidate, problems: tuple[Problem, ...], out_dir: Path | None
) -> RuleResult:
    native = candidate.native
    query = candidate.body["properties"]
    text = query.get("query") if isinstance(query, dict) else None
    if any(p.is_error for p in problems):
        return RuleResult(
            native.path,
            "failed",
            native.rule_id,
            native.title,
            text if isinstance(text, str) else None,
            None,
            problems,
        )
    output = None
    if out_dir is not None:
        output = out_dir / f"{native.rule_id}.json"
        rendered = json.dumps(candidate.document, indent=2, ensure_ascii=False) + "\n"
        _write_if_changed(output, rendered)
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


def _finish(
    path: Path,
    who: RuleIdentity,
    rule: BuiltRule,
    problems: tuple[Problem, ...],
    out_dir: Path | None,
) -> RuleResult:
    if any(p.is_error for p in problems):
        return RuleResult(path, "failed", who.rule_id, who.title, rule.query, None, problems)
    output = None
    if out_dir is not None:
        output = out_dir / f"{who.rule_id}.json"
        _write_if_changed(output, rule.text)
    return RuleResult(
        path,
        "built" if output else "valid",
        who.rule_id,
        who.title,
        rule.sent_query,
        output,
        problems,
        pipeline=rule.pipeline,
        table=rule.table,
        body=rule.body,
    )


def _failed(path: Path, problems: Sequence[Problem], who: RuleIdentity | None) -> RuleResult:
    return RuleResult(
        path,
        "failed",
        who.rule_id if who else None,
        who.title if who else None,
        None,
        None,
        tuple(problems),
    )


def _existing(paths: Sequence[Path]) -> list[Path]:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    return list(paths)


def _write_if_changed(path: Path, text: str) -> None:
    """Write atomically; a file that already holds `text` is left alone (a rebuild with nothing
    changed writes nothing)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
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
