"""The command line: options, output and exit codes; the only home of typer and rich.

Each command resolves its options, calls one function of the core and prints what it returns.
Results go to stdout, the summary line and diagnostics to stderr.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from deployer import __version__
from deployer.build import BuildRequest, run_build
from deployer.config import PIPELINES, ProjectConfig, find_config, load_config
from deployer.errors import (
    ConfigError,
    DeployerError,
    KqlServiceError,
    KqlUnavailableError,
    TemplateError,
    UsageError,
)
from deployer.github import (
    detection_annotations,
    post_sticky_comment,
    pull_request_from_environment,
    result_annotations,
    run_url,
)
from deployer.kql import LazyKqlService
from deployer.model import RuleResult
from deployer.plan import plans_from_json, plans_to_json
from deployer.report import (
    detection_json_line,
    detection_lines,
    detection_summary,
    failures_markdown,
    json_line,
    relative_path,
    summary,
    text_lines,
)
from deployer.report_plan import (
    changes_count,
    ledger_lines,
    ledger_markdown,
    ledger_summary,
    plan_json,
    plan_markdown,
    plan_summary,
    plan_text,
)
from deployer.validate import QueryValidator
from deployer.workers import BuildWorkers

if TYPE_CHECKING:
    from deployer.apply import LedgerEntry
    from deployer.deployment import BuildOptions, EnvironmentPlan, Target
    from deployer.detection.runner import RuleTestResult
    from deployer.plan import Plan
    from deployer.workspace import Workspace

# NOTE: the commands import the Azure SDK (deployment, apply), DuckDB (detection tests) and the
# emulator where they use them, not here: `build` would otherwise pay about a second and 80 MB
# for them on every run, and so would each build worker process, which imports this module.

logger = logging.getLogger(__name__)


class ExitCode(enum.IntEnum):
    """Documented in the README; 2 is kept for `plan --detailed-exitcode` (changes present)."""

    OK = 0
    RULES_FAILED = 1
    CHANGES = 2
    USAGE = 64
    UNAVAILABLE = 69
    INTERNAL = 70
    CONFIG = 78


# The pipelines as a choice typer can check and list in --help.
PipelineName = enum.StrEnum("PipelineName", {name: name for name in PIPELINES})  # type: ignore[misc]


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    # GitHub Actions: each problem as an annotation on its file and line.
    GITHUB = "github"


app = typer.Typer(
    name="sentinel-deployer",
    help="Sigma rules in, Microsoft Sentinel analytics rules out: build, validate, deploy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Rule files or folders (searched recursively). Default: the rules folder."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Project file. Default: sentinel-deployer.toml in this folder or one above it.",
        dir_okay=False,
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Log details and show tracebacks.")]
PipelineOpt = Annotated[
    PipelineName | None,
    typer.Option("--pipeline", help="Processing pipeline for every rule (overrides the config)."),
]
EnvOpt = Annotated[
    str | None, typer.Option("--env", help="Apply this environment's overrides and API version.")
]
FormatOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        help="text; json: one object per rule and line; github: GitHub Actions annotations.",
    ),
]
JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        min=1,
        help="Worker processes converting rules. Default: the CPUs available, at most 4; "
        "1 converts in this process.",
    ),
]
NoCacheOpt = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Build every rule afresh, without reading or writing .sentinel-deployer/cache/.",
    ),
]
SkipKqlOpt = Annotated[
    bool,
    typer.Option(
        "--skip-kql",
        help="Do not check queries with Kusto.Language (when Node.js is unavailable).",
    ),
]


@app.command()
def build(
    paths: PathsArg = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder. Default: build/.", file_okay=False)
    ] = None,
    pipeline: PipelineOpt = None,
    env: EnvOpt = None,
    output_format: FormatOpt = OutputFormat.TEXT,
    skip_kql: SkipKqlOpt = False,
    jobs: JobsOpt = None,
    no_cache: NoCacheOpt = False,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Convert, validate and render rules to one ARM template each: OUT/<rule-id>.json."""
    with _command(debug):
        project = _project(config)
        request = BuildRequest(
            paths=tuple(paths or ()),
            out_dir=out or project.out_dir,
            pipeline=pipeline.value if pipeline else None,
            environment=env,
            jobs=jobs,
            use_cache=not no_cache,
        )
        _run(project, request, output_format, skip_kql=skip_kql)


@app.command()
def validate(
    paths: PathsArg = None,
    pipeline: PipelineOpt = None,
    env: EnvOpt = None,
    output_format: FormatOpt = OutputFormat.TEXT,
    skip_kql: SkipKqlOpt = False,
    jobs: JobsOpt = None,
    no_cache: NoCacheOpt = False,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Run every check of `build` without writing anything."""
    with _command(debug):
        project = _project(config)
        request = BuildRequest(
            paths=tuple(paths or ()),
            pipeline=pipeline.value if pipeline else None,
            environment=env,
            jobs=jobs,
            use_cache=not no_cache,
        )
        _run(project, request, output_format, skip_kql=skip_kql)


@app.command("test")
def test_rules(
    paths: PathsArg = None,
    pipeline: PipelineOpt = None,
    env: EnvOpt = None,
    output_format: FormatOpt = OutputFormat.TEXT,
    jobs: JobsOpt = None,
    no_cache: NoCacheOpt = False,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Run each rule's detection tests (<rule>.tests.yml) on the query a deploy would send."""
    from deployer.detection.engine import EventEngine  # noqa: PLC0415 - see the NOTE above
    from deployer.detection.runner import run_detection_tests  # noqa: PLC0415

    with _command(debug):
        project = _project(config)
        request = BuildRequest(
            paths=tuple(paths or ()),
            pipeline=pipeline.value if pipeline else None,
            environment=env,
            jobs=jobs,
            use_cache=not no_cache,
        )
        root = Path.cwd()

        def show(result: RuleTestResult) -> None:
            if output_format is OutputFormat.JSON:
                typer.echo(detection_json_line(result, root=root))
            elif output_format is OutputFormat.GITHUB:
                typer.echo(next(iter(detection_lines(result, root=root))))
                for line in detection_annotations(result, root=root):
                    typer.echo(line)
            else:
                for line in detection_lines(result, root=root):
                    typer.echo(line)

        engine = EventEngine()
        try:
            results = run_detection_tests(project, request, engine=engine, on_result=show)
        finally:
            engine.close()
        stderr.print(detection_summary(results))
        untested_fails = project.require_tests and any(r.status == "untested" for r in results)
        if untested_fails or any(result.status == "failed" for result in results):
            raise typer.Exit(ExitCode.RULES_FAILED)


class PlanFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


EnvsOpt = Annotated[
    list[str] | None,
    typer.Option("--env", help="Environment to plan or deploy; may be given several times."),
]
AllEnvsOpt = Annotated[bool, typer.Option("--all-envs", help="Every configured environment.")]
PruneOpt = Annotated[
    bool,
    typer.Option(
        "--prune",
        help="Delete rules this project deployed that are no longer in rules/ (or excluded).",
    ),
]


@app.command()
def plan(
    env: EnvsOpt = None,
    all_envs: AllEnvsOpt = False,
    prune: PruneOpt = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the plan (JSON) for deploy --plan.")
    ] = None,
    output_format: Annotated[
        PlanFormat, typer.Option("--format", help="text, json, or markdown (GitHub).")
    ] = PlanFormat.TEXT,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 0 without changes, 2 with changes."),
    ] = False,
    skip_kql: SkipKqlOpt = False,
    jobs: JobsOpt = None,
    no_cache: NoCacheOpt = False,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show what deploy would change in each workspace, without changing anything."""
    from deployer.deployment import BuildOptions  # noqa: PLC0415 - see the NOTE above

    with _command(debug):
        project = _project(config)
        markdown = output_format is PlanFormat.MARKDOWN
        options = BuildOptions(jobs, use_cache=not no_cache, skip_kql=skip_kql)
        plans = _plans(project, env, all_envs, prune=prune, options=options, markdown=markdown)
        ready = [p.plan for p in plans if p.plan is not None]
        for planned in ready:
            if output_format is PlanFormat.MARKDOWN:
                # The pull-request view: each changed rule's detection tests beside its diff.
                tests = _detection_results(project, planned.environment)
                typer.echo(plan_markdown(planned, tests=tests))
            else:
                _print_plan(planned, output_format)
            stderr.print(plan_summary(planned))
        if out is not None:
            out.write_text(json.dumps(plans_to_json(ready), indent=2) + "\n", encoding="utf-8")
        if any(p.plan is None for p in plans):
            raise typer.Exit(ExitCode.RULES_FAILED)
        if detailed_exitcode and any(planned.has_changes for planned in ready):
            raise typer.Exit(ExitCode.CHANGES)


class DeployFormat(enum.StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"


@app.command()
def deploy(
    env: EnvsOpt = None,
    all_envs: AllEnvsOpt = False,
    plan_file: Annotated[
        Path | None, typer.Option("--plan", help="Apply exactly this saved plan.", dir_okay=False)
    ] = None,
    prune: PruneOpt = False,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")
    ] = False,
    overwrite_drift: Annotated[
        bool,
        typer.Option("--overwrite-drift", help="Replace rules that were edited in the workspace."),
    ] = False,
    output_format: Annotated[
        DeployFormat,
        typer.Option("--format", help="text, or markdown: plan and ledger for a job summary."),
    ] = DeployFormat.TEXT,
    skip_kql: SkipKqlOpt = False,
    jobs: JobsOpt = None,
    no_cache: NoCacheOpt = False,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Validate, plan, confirm, and apply: make each workspace match the rules."""
    from deployer.apply import apply_plan  # noqa: PLC0415 - see the NOTE above
    from deployer.deployment import (  # noqa: PLC0415
        BuildOptions,
        open_workspaces,
        select_environments,
    )

    with _command(debug):
        project = _project(config)
        environments = select_environments(project, env or [], all_envs)
        saved = _saved_plans(project, plan_file) if plan_file else None
        options = BuildOptions(jobs, use_cache=not no_cache, skip_kql=skip_kql)
        failed = False
        with (
            _kql_service(skip_kql or saved is not None) as queries,
            BuildWorkers(jobs) as workers,
            open_workspaces(project, environments) as opened,
        ):
            for target, workspace in opened:
                if target.emulated:
                    stderr.print(f"target: {target.ref.label}; no Azure account is used")
                planned = _plan_for(
                    project,
                    target,
                    workspace,
                    saved,
                    prune,
                    queries,
                    options.with_workers(workers),
                    markdown=output_format is DeployFormat.MARKDOWN,
                )
                if planned is None:
                    failed = True
                    continue
                _print_plan(planned, PlanFormat(output_format.value))
                if not planned.has_changes:
                    stderr.print(plan_summary(planned))
                    continue
                # The local emulator holds nothing that could be lost: no question to ask.
                _confirm(planned, auto_approve or target.emulated)
                entries = apply_plan(
                    planned,
                    workspace,
                    overwrite_drift=overwrite_drift,
                    concurrency=target.environment.concurrency,
                )
                _print_ledger(planned.environment, entries, output_format)
                stderr.print(ledger_summary(planned.environment, entries))
                failed |= any(e.outcome in ("failed", "refused") for e in entries)
        if failed:
            raise typer.Exit(ExitCode.RULES_FAILED)


@app.command()
def export(
    env: EnvOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the rule files. Default: rules/exported."),
    ] = None,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Write a workspace's Scheduled rules as native rule files (*.arm.json) to adopt them."""
    from deployer.deployment import (  # noqa: PLC0415 - see the NOTE above
        export_environment,
        open_workspaces,
        select_environments,
    )

    with _command(debug):
        project = _project(config)
        environments = select_environments(project, [env] if env else [], False)
        out_dir = out or project.rules_dir / "exported"
        with open_workspaces(project, environments) as [(target, workspace)]:
            if target.emulated:
                stderr.print(f"target: {target.ref.label}; no Azure account is used")
            exported = export_environment(project, target, workspace, out_dir)
        root = Path.cwd()
        for item in exported:
            if item.path is not None:
                typer.echo(
                    f"exported  {item.display_name}  ({item.rule_id}) -> "
                    f"{relative_path(item.path, root)}"
                )
            else:
                typer.echo(f"skipped   {item.display_name}  ({item.rule_id})")
                typer.echo(f"  {item.reason}")
        written = sum(1 for item in exported if item.path is not None)
        stderr.print(
            f"{target.environment.name}: {written} rule(s) exported, "
            f"{len(exported) - written} skipped; run plan to see what adopting them changes"
        )


@app.command()
def emulator(
    state: Annotated[
        Path, typer.Option("--state", help="Folder for the emulated workspaces' state.")
    ] = Path(".sentinel-deployer/emulator"),
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free).")] = 8443,
    in_memory: Annotated[
        bool, typer.Option("--in-memory", help="Keep the state in memory only (not in --state).")
    ] = False,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0, help="Delay every answer (benchmarks).")
    ] = 0.0,
    write_bucket: Annotated[
        str | None,
        typer.Option(
            "--write-bucket",
            help="CAPACITY,PER_SECOND: throttle writes with a token bucket, answering 429 with "
            "Retry-After when it is empty (Azure's is 200,10 per principal).",
        ),
    ] = None,
    request_log: Annotated[
        Path | None,
        typer.Option("--request-log", help="Append each request to FILE as a JSON line."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Run the local workspace emulator (HTTPS, ARM wire protocol) until interrupted."""
    from deployer.emulator import Emulator, Faults  # noqa: PLC0415 - see the NOTE above

    with _command(debug):
        faults = Faults(latency_s=latency_ms / 1000, write_bucket=_bucket(write_bucket))
        server = Emulator(
            state_dir=None if in_memory else state,
            port=port,
            faults=faults,
            request_log=request_log,
        )
        server.start()
        # The CA file lives with the state; in memory, the emulator keeps it in a temporary one.
        stderr.print(f"local workspace emulator at {server.url}")
        stderr.print(f"trust its certificate with REQUESTS_CA_BUNDLE={server.ca_path}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


class ListFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


@app.command()
def environments(
    env: EnvsOpt = None,
    output_format: Annotated[
        ListFormat,
        typer.Option("--format", help="text, or json: a list for a CI job matrix."),
    ] = ListFormat.TEXT,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List the environments deploy --all-envs would target (or those named with --env).

    With no environment configured, the list is the local workspace emulator, as for deploy.
    """
    from deployer.deployment import (  # noqa: PLC0415 - see the NOTE at the top
        environment_matrix,
        select_environments,
    )

    with _command(debug):
        project = _project(config)
        chosen = select_environments(project, env or [], all_envs=not env)
        entries = environment_matrix(chosen)
        if output_format is ListFormat.JSON:
            # One line: GitHub reads a step output as `name=value`.
            typer.echo(json.dumps(entries, separators=(",", ":")))
        else:
            for entry in entries:
                where = "local workspace emulator" if entry["emulator"] else entry["workspace"]
                typer.echo(f"{entry['name']}  {where}")
        stderr.print(f"{len(entries)} environment(s)")


@app.command()
def comment(
    markdown_file: Annotated[
        Path,
        typer.Argument(
            help="The Markdown to post (plan --format markdown's output).", dir_okay=False
        ),
    ],
    pr: Annotated[
        int | None,
        typer.Option("--pr", help="Pull request number. Default: the event's (GITHUB_EVENT_PATH)."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Post the plan as the pull request's one sticky comment: edited in place, never duplicated.

    Reads GITHUB_API_URL, GITHUB_REPOSITORY and GITHUB_TOKEN from the environment.
    """
    with _command(debug):
        if not markdown_file.is_file():
            raise UsageError(f"{markdown_file}: no such file")
        markdown = markdown_file.read_text(encoding="utf-8")
        pull, token = pull_request_from_environment(os.environ, pr)
        result = post_sticky_comment(pull, markdown, token=token, full_text_at=run_url(os.environ))
        where = f": {result.url}" if result.url else ""
        typer.echo(f"{result.action} comment {result.comment_id} on #{pull.number}{where}")
        if result.truncated:
            stderr.print("the plan was longer than GitHub allows in a comment: it was cut")


def _bucket(text: str | None) -> tuple[int, float] | None:
    if text is None:
        return None
    try:
        capacity, per_second = text.split(",")
        bucket = (int(capacity), float(per_second))
    except ValueError:
        raise UsageError(f"--write-bucket {text!r}: expected CAPACITY,PER_SECOND") from None
    if bucket[0] < 1 or bucket[1] < 0:
        raise UsageError(f"--write-bucket {text!r}: capacity >= 1 and a rate >= 0 are expected")
    return bucket


@app.command()
def version() -> None:
    """Print the tool's version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point: usage errors exit 64 (typer's default, 2, means "changes
    present" for `plan --detailed-exitcode`)."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as error:
        # Usage errors (unknown option, bad value, missing argument) in typer's own words.
        show = getattr(error, "show", None)
        if callable(show):
            show()
        else:
            stderr.print(f"error: {error.format_message()}")
        sys.exit(ExitCode.USAGE)
    except (typer.Abort, KeyboardInterrupt):
        stderr.print("aborted")
        sys.exit(ExitCode.USAGE)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _plans(
    project: ProjectConfig,
    env: list[str] | None,
    all_envs: bool,
    *,
    prune: bool,
    options: BuildOptions,
    markdown: bool = False,
) -> list[EnvironmentPlan]:
    """Plan every chosen environment; rules that fail validation are shown, nothing compared."""
    from deployer.deployment import (  # noqa: PLC0415 - see the NOTE at the top
        open_workspaces,
        plan_environment,
        select_environments,
    )

    environments = select_environments(project, env or [], all_envs)
    plans = []
    with (
        _kql_service(options.skip_kql) as queries,
        BuildWorkers(options.jobs) as workers,
        open_workspaces(project, environments) as opened,
    ):
        for target, workspace in opened:
            planned = plan_environment(
                project,
                target,
                workspace,
                prune=prune,
                queries=queries,
                options=options.with_workers(workers),
            )
            _show_failures(planned, markdown=markdown)
            plans.append(planned)
    return plans


def _plan_for(
    project: ProjectConfig,
    target: Target,
    workspace: Workspace,
    saved: dict[str, Plan] | None,
    prune: bool,
    queries: QueryValidator | None,
    options: BuildOptions,
    *,
    markdown: bool = False,
) -> Plan | None:
    from deployer.deployment import plan_environment  # noqa: PLC0415 - see the NOTE at the top

    if saved is None:
        planned = plan_environment(
            project, target, workspace, prune=prune, queries=queries, options=options
        )
        _show_failures(planned, markdown=markdown)
        return planned.plan
    found = saved.get(target.environment.name)
    if found is None:
        raise UsageError(f"the plan file has no plan for environment {target.environment.name}")
    return found


def _detection_results(project: ProjectConfig, environment: str) -> dict[str, RuleTestResult]:
    from deployer.detection.engine import EventEngine  # noqa: PLC0415 - see the NOTE at the top
    from deployer.detection.runner import run_detection_tests  # noqa: PLC0415

    configured = environment in project.environments
    request = BuildRequest(environment=environment if configured else None)
    engine = EventEngine()
    try:
        results = run_detection_tests(project, request, engine=engine)
    finally:
        engine.close()
    return {r.rule_id.lower(): r for r in results if r.rule_id}


def _saved_plans(project: ProjectConfig, path: Path) -> dict[str, Plan]:
    """A saved plan, refused whole when the rules, config or templates changed since."""
    from deployer.deployment import project_hash  # noqa: PLC0415 - see the NOTE at the top

    try:
        plans = plans_from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{path}: not a plan file written by `plan --out` ({error})") from error
    current = project_hash(project)
    for saved in plans:
        if saved.source_hash != current:
            raise UsageError(
                f"{path}: the rules, config or templates changed since this plan was made; "
                "run plan again"
            )
    return {saved.environment: saved for saved in plans}


def _show_failures(planned: EnvironmentPlan, *, markdown: bool = False) -> None:
    """The failing rules on stdout, as text lines or a Markdown table; a note on stderr."""
    root = Path.cwd()
    if markdown and planned.failed:
        name = planned.target.environment.name
        typer.echo(failures_markdown(name, planned.results, root=root))
    for result in planned.failed if not markdown else ():
        for line in text_lines(result, root=root):
            typer.echo(line)
    if planned.failed:
        stderr.print(
            f"{planned.target.environment.name}: {summary(planned.results)}; nothing was "
            "compared or sent: fix the failing rules first"
        )


def _print_plan(planned: Plan, output_format: PlanFormat) -> None:
    if output_format is PlanFormat.JSON:
        typer.echo(plan_json(planned))
    elif output_format is PlanFormat.MARKDOWN:
        typer.echo(plan_markdown(planned))
    else:
        # Colours only on a terminal (click strips them elsewhere) and never under NO_COLOR.
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        for line in plan_text(planned):
            shade = _PLAN_COLOURS.get(line[2:4]) if colour else None
            typer.echo(typer.style(line, fg=shade) if shade else line)


def _print_ledger(
    environment: str, entries: list[LedgerEntry], output_format: DeployFormat
) -> None:
    if output_format is DeployFormat.MARKDOWN:
        typer.echo(ledger_markdown(environment, entries))
        return
    for line in ledger_lines(entries):
        typer.echo(line)


# Plan lines by their symbol: "  + create", "  ~ update", "  - delete", "  ! drift" ...
_PLAN_COLOURS = {"+ ": "green", "~ ": "yellow", "- ": "red", "! ": "magenta", "? ": "cyan"}


def _confirm(planned: Plan, auto_approve: bool) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise UsageError("not a terminal, so nothing to confirm with: pass --auto-approve")
    if not typer.confirm(f"Apply {changes_count(planned)} change(s) to {planned.target}?"):
        raise typer.Abort()


def _run(
    project: ProjectConfig, request: BuildRequest, output_format: OutputFormat, *, skip_kql: bool
) -> None:
    root = Path.cwd()

    def show(result: RuleResult) -> None:
        if output_format is OutputFormat.JSON:
            typer.echo(json_line(result, root=root))
        elif output_format is OutputFormat.GITHUB:
            # The rule's own line for the log; its problems as annotations, not indented lines.
            typer.echo(next(iter(text_lines(result, root=root))))
            for line in result_annotations(result, root=root):
                typer.echo(line)
        else:
            for line in text_lines(result, root=root):
                typer.echo(line)

    with _kql_service(skip_kql) as queries:
        results = run_build(project, request, queries=queries, on_result=show)
    stderr.print(summary(results))
    if any(result.status == "failed" for result in results):
        raise typer.Exit(ExitCode.RULES_FAILED)


@contextlib.contextmanager
def _kql_service(skip: bool) -> Iterator[QueryValidator | None]:
    if skip:
        logger.warning("KQL is not checked (--skip-kql)")
        yield None
        return
    # Started by the build only when a rule is not in the cache; it then overlaps conversion.
    with LazyKqlService() as service:
        yield QueryValidator(service, _schema_tables)


def _schema_tables(pipeline: str) -> Mapping[str, Mapping[str, str]]:
    # The schemas come with pySigma's pipelines, loaded only once a query is checked.
    from deployer.pipelines import table_columns  # noqa: PLC0415

    return table_columns(pipeline)


def _project(config: Path | None) -> ProjectConfig:
    cwd = Path.cwd()
    if config is not None and not config.is_file():
        raise UsageError(f"{config}: no such config file")
    return load_config(config or find_config(cwd), cwd=cwd)


@contextlib.contextmanager
def _command(debug: bool) -> Iterator[None]:
    """Logging set-up and the one place that turns errors into a line and an exit code."""
    _configure_logging(debug)
    try:
        yield
    except typer.Exit:
        raise
    except DeployerError as error:
        if debug:
            stderr.print_exception()
        stderr.print(f"error: {error}")
        if isinstance(error, KqlUnavailableError):
            stderr.print("(run with --skip-kql to build without checking queries)")
        raise typer.Exit(_exit_code(error)) from None
    # The CLI's catch-all (the other is the per-rule conversion step): a bug must still end in
    # one line and a documented exit code, with the traceback under --debug.
    except Exception as error:  # noqa: BLE001 - see the comment above
        if debug:
            stderr.print_exception()
        stderr.print(
            f"internal error: {type(error).__name__}: {error} "
            "(run with --debug for the traceback and report it)"
        )
        raise typer.Exit(ExitCode.INTERNAL) from None


def _exit_code(error: DeployerError) -> ExitCode:
    if isinstance(error, UsageError):
        return ExitCode.USAGE
    if isinstance(error, KqlServiceError):
        return ExitCode.UNAVAILABLE
    # A broken templates folder is project configuration too: no rule was looked at.
    if isinstance(error, ConfigError | TemplateError):
        return ExitCode.CONFIG
    return ExitCode.RULES_FAILED


def _configure_logging(debug: bool) -> None:
    """Our package's logger only, so the Azure SDK's loggers stay quiet unless asked."""
    package = logging.getLogger("deployer")
    package.handlers[:] = [RichHandler(console=stderr, show_time=False, show_path=False)]
    package.setLevel(logging.DEBUG if debug else logging.WARNING)
    package.propagate = False
    # azure-identity logs each failed credential as a warning of many lines; the error that
    # follows says it in one. With --debug they show. azure-core redacts Authorization.
    azure = logging.getLogger("azure")
    azure.handlers[:] = [RichHandler(console=stderr, show_time=False, show_path=False)]
    azure.setLevel(logging.DEBUG if debug else logging.CRITICAL)
    azure.propagate = False
