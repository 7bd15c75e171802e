"""From environments to plans: which workspaces, how to reach them, and what would change.

An environment is a Sentinel workspace from the config, or the local workspace emulator (with
`emulator = true`, or when no environment is configured at all), started in this process.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from deployer import __version__
from deployer.build import BuildRequest, run_build
from deployer.config import DEFAULT_ENVIRONMENT, Environment, ProjectConfig
from deployer.detection.cases import cases_path
from deployer.emulator import Emulator
from deployer.errors import UsageError
from deployer.fingerprint import Owner, read_marker
from deployer.model import RuleResult
from deployer.native import NativeSource, export_file_name, export_template
from deployer.plan import DesiredRule, Plan, make_plan, source_hash
from deployer.render import TEMPLATE_NAME, default_templates_dir
from deployer.report import relative_path
from deployer.sources import find_rule_files
from deployer.validate import QueryValidator
from deployer.workers import BuildWorkers
from deployer.workspace import StaticToken, Workspace, WorkspaceRef, credential_for

# Names the local emulator's workspace in ARM paths; no Azure resource has them.
EMULATOR_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
EMULATOR_RESOURCE_GROUP = "sentinel-deployer-local"
EMULATOR_STATE = Path(".sentinel-deployer") / "emulator"


@dataclass(frozen=True)
class Target:
    """One environment, resolved to a workspace the SDK can reach."""

    environment: Environment
    ref: WorkspaceRef
    emulated: bool


@dataclass(frozen=True)
class BuildOptions:
    """How plan and deploy build the rules: the CLI's --jobs, --no-cache and --skip-kql."""

    jobs: int | None = None
    use_cache: bool = True
    skip_kql: bool = False
    # Worker processes shared by the builds of every environment in one command.
    workers: BuildWorkers | None = None

    def with_workers(self, workers: BuildWorkers) -> BuildOptions:
        return replace(self, workers=workers)


@dataclass(frozen=True)
class EnvironmentPlan:
    target: Target
    results: tuple[RuleResult, ...]
    plan: Plan | None

    @property
    def failed(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")


def select_environments(
    config: ProjectConfig, names: Sequence[str], all_envs: bool
) -> list[Environment]:
    """--env (several allowed), --all-envs, the only one, or the local emulator."""
    if not config.environments:
        if names and any(name != DEFAULT_ENVIRONMENT for name in names):
            raise UsageError(
                f"no environments are configured; only '{DEFAULT_ENVIRONMENT}' (the local "
                "workspace emulator) exists"
            )
        return [Environment(name=DEFAULT_ENVIRONMENT, emulator=True)]
    if all_envs:
        return list(config.environments.values())
    if names:
        return [config.environment(name) for name in dict.fromkeys(names)]
    if len(config.environments) == 1:
        return list(config.environments.values())
    raise UsageError(
        "several environments are configured: choose with --env NAME or --all-envs (known: "
        + ", ".join(sorted(config.environments))
        + ")"
    )


def environment_matrix(environments: Sequence[Environment]) -> list[dict[str, str | bool]]:
    """One entry per environment, for a CI job matrix (`environments --format json`).

    `workspace` names the workspace the environment writes to (the local emulator's are named
    by environment), so that a CI concurrency group keyed on it keeps two deploys to one
    workspace from overlapping even when two environments share it.
    """
    entries: list[dict[str, str | bool]] = []
    for environment in environments:
        if environment.emulator:
            workspace = f"local-emulator/{environment.workspace or environment.name}"
        else:
            parts = (environment.subscription_id, environment.resource_group, environment.workspace)
            workspace = "/".join(part or "" for part in parts).lower()
        entries.append(
            {"name": environment.name, "emulator": environment.emulator, "workspace": workspace}
        )
    return entries


@contextlib.contextmanager
def open_workspaces(
    config: ProjectConfig, environments: Sequence[Environment]
) -> Iterator[list[tuple[Target, Workspace]]]:
    """A Workspace per environment; the emulator, if any environment needs it, runs meanwhile."""
    with contextlib.ExitStack() as stack:
        emulator = None
        opened: list[tuple[Target, Workspace]] = []
        for environment in environments:
            if environment.emulator:
                if emulator is None:
                    emulator = stack.enter_context(_local_emulator(config.root))
                ref = WorkspaceRef(
                    label=f"{environment.name} (local workspace emulator at {emulator.url})",
                    subscription_id=EMULATOR_SUBSCRIPTION,
                    resource_group=EMULATOR_RESOURCE_GROUP,
                    workspace=environment.workspace or environment.name,
                    api_version=environment.api_version or config.api_version,
                    arm_endpoint=emulator.url,
                )
                credential = StaticToken("local-emulator", int(time.time()) + 86400)
                workspace = Workspace(ref, credential, connection_verify=str(emulator.ca_path))
            else:
                ref = WorkspaceRef(
                    label=f"{environment.name} ({environment.workspace})",
                    subscription_id=environment.subscription_id or "",
                    resource_group=environment.resource_group or "",
                    workspace=environment.workspace or "",
                    api_version=environment.api_version or config.api_version,
                    cloud=environment.cloud,
                    arm_endpoint=environment.arm_endpoint,
                )
                # TLS trust: REQUESTS_CA_BUNDLE, else SSL_CERT_FILE, else the system store.
                workspace = Workspace(ref, credential_for(environment.credential))
            stack.callback(workspace.close)
            opened.append((Target(environment, ref, environment.emulator), workspace))
        yield opened


def plan_environment(
    config: ProjectConfig,
    target: Target,
    workspace: Workspace,
    *,
    prune: bool,
    queries: QueryValidator | None,
    options: BuildOptions | None = None,
) -> EnvironmentPlan:
    """Build for the environment; when every rule is valid, list the workspace and compare."""
    # TODO: with several environments every rule is converted once per environment (about
    # 0.9 s a workspace for 500 rules, README Performance): the ownership line and overrides
    # make each environment's templates, and so its cache keys, its own, though the KQL is the
    # same. Converting each file once per pipeline for all environments of a command, then
    # rendering per environment, would leave the paged list as the cost of a workspace.
    options = options or BuildOptions()
    configured = target.environment.name in config.environments
    request = BuildRequest(
        environment=target.environment.name if configured else None,
        jobs=options.jobs,
        use_cache=options.use_cache,
    )
    results = tuple(run_build(config, request, queries=queries, workers=options.workers))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        # Nothing is compared, let alone sent, while any rule fails validation.
        return EnvironmentPlan(target, results, None)
    desired = [
        DesiredRule(r.rule_id, r.body, relative_path(r.path, config.root))
        for r in results
        if r.status in ("valid", "built") and r.rule_id and r.body is not None
    ]
    plan = make_plan(
        desired,
        workspace.list_rules(),
        owner=Owner(config.name, target.environment.name),
        prune=prune,
        target=target.ref.label,
        tool_version=__version__,
        source_hash=project_hash(config),
    )
    return EnvironmentPlan(target, results, plan)


def project_hash(config: ProjectConfig) -> str:
    """Hash of everything a plan is made from: rules, their tests, config and templates."""
    rules = find_rule_files([config.rules_dir]) if config.rules_dir.is_dir() else []
    files = [*rules, *(cases_path(r) for r in rules if cases_path(r).is_file())]
    if config.path is not None:
        files.append(config.path)
    templates = config.templates_dir or default_templates_dir()
    files.append(templates / TEMPLATE_NAME)
    return source_hash(files, config.root)


@contextlib.contextmanager
def _local_emulator(root: Path) -> Iterator[Emulator]:
    emulator = Emulator(state_dir=root / EMULATOR_STATE)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@dataclass(frozen=True)
class Exported:
    """One workspace rule and what export did with it."""

    rule_id: str
    display_name: str
    path: Path | None
    reason: str | None = None


def export_environment(
    config: ProjectConfig, target: Target, workspace: Workspace, out_dir: Path
) -> list[Exported]:
    """Write the workspace's Scheduled rules that the project lacks as native rule files.

    Rules this project already deploys to this environment, rules another project deployed
    and rules whose id a file in rules/ already uses are left out, each with its reason.
    """
    # NOTE: imported here: rules.py loads pySigma, which plan and deploy need only for rules
    # not in the build cache.
    from deployer.rules import SigmaSource, load_any  # noqa: PLC0415

    owner = Owner(config.name, target.environment.name)
    files = find_rule_files([config.rules_dir]) if config.rules_dir.is_dir() else []
    known = {
        item.rule_id.lower()
        for item in (load_any(path) for path in files)
        if isinstance(item, SigmaSource | NativeSource)
    }
    results = []
    for rule in sorted(workspace.list_rules(), key=lambda r: str(r.get("name"))):
        name = str(rule.get("name"))
        properties = rule.get("properties") or {}
        title = str(properties.get("displayName") or name)
        marker = read_marker(properties)
        reason = None
        if owner.owns(marker):
            reason = "deployed by this project already"
        elif marker is not None:
            reason = f"deployed by project {marker.project}, environment {marker.environment}"
        elif name.lower() in known:
            reason = "a rule file in rules/ already has this id"
        template = export_template(rule, target.ref.api_version) if reason is None else None
        if isinstance(template, str):
            reason = template
        if template is None or isinstance(template, str):
            results.append(Exported(name, title, None, reason))
            continue
        path = out_dir / export_file_name(rule)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(template, indent=2, ensure_ascii=False) + "\n"
        path.write_text(text, encoding="utf-8", newline="\n")
        results.append(Exported(name, title, path))
    return results
