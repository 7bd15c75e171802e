"""The command line: options, output and exit codes; the only home of typer and rich.

Each command resolves its options, calls one function of the core and prints what it returns.
Results go to stdout, the summary line and diagnostics to stderr.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from deployer import __version__
from deployer.build import BuildRequest, run_build
from deployer.config import PIPELINES, ProjectConfig, find_config, load_config
from deployer.detection.engine import EventEngine
from deployer.detection.runner import RuleTestResult, run_detection_tests
from deployer.errors import (
    ConfigError,
    DeployerError,
    KqlServiceError,
    KqlUnavailableError,
    TemplateError,
    UsageError,
)
from deployer.kql import KqlLanguageService
from deployer.model import RuleResult
from deployer.pipelines import table_columns
from deployer.report import (
    detection_json_line,
    detection_lines,
    detection_summary,
    json_line,
    summary,
    text_lines,
)
from deployer.validate import QueryValidator

logger = logging.getLogger(__name__)


class ExitCode(enum.IntEnum):
    """Documented in the README; 2 is kept for `plan --detailed-exitcode` (changes present)."""

    OK = 0
    RULES_FAILED = 1
    USAGE = 64
    UNAVAILABLE = 69
    INTERNAL = 70
    CONFIG = 78


# The pipelines as a choice typer can check and list in --help.
PipelineName = enum.StrEnum("PipelineName", {name: name for name in PIPELINES})  # type: ignore[misc]


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


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
    OutputFormat, typer.Option("--format", help="text, or json: one object per rule and line.")
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
        )
        _run(project, request, output_format, skip_kql=skip_kql)


@app.command()
def validate(
    paths: PathsArg = None,
    pipeline: PipelineOpt = None,
    env: EnvOpt = None,
    output_format: FormatOpt = OutputFormat.TEXT,
    skip_kql: SkipKqlOpt = False,
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
        )
        _run(project, request, output_format, skip_kql=skip_kql)


@app.command("test")
def test_rules(
    paths: PathsArg = None,
    pipeline: PipelineOpt = None,
    env: EnvOpt = None,
    output_format: FormatOpt = OutputFormat.TEXT,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Run each rule's detection tests (<rule>.tests.yml) on the query a deploy would send."""
    with _command(debug):
        project = _project(config)
        request = BuildRequest(
            paths=tuple(paths or ()),
            pipeline=pipeline.value if pipeline else None,
            environment=env,
        )
        root = Path.cwd()

        def show(result: RuleTestResult) -> None:
            if output_format is OutputFormat.JSON:
                typer.echo(detection_json_line(result, root=root))
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


def _run(
    project: ProjectConfig, request: BuildRequest, output_format: OutputFormat, *, skip_kql: bool
) -> None:
    root = Path.cwd()

    def show(result: RuleResult) -> None:
        if output_format is OutputFormat.JSON:
            typer.echo(json_line(result, root=root))
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
    with KqlLanguageService() as service:
        yield QueryValidator(service, table_columns)


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
