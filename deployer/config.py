"""The project file, `sentinel-deployer.toml`: defaults, environments and their overrides.

The tool also runs with no file at all: every setting has a default. Rule settings come in
layers, later ones winning: the built-in defaults, `[defaults]`, the rule's own `sentinel:`
block, then `[environments.NAME.overrides]` (an environment's policy beats a rule's wish).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.alertrule import (
    API_VERSIONS,
    ENTITY_TYPES,
    EVENT_GROUPING_KINDS,
    GA_API_VERSION,
    MATCHING_METHODS,
    TRIGGER_OPERATORS,
    parse_duration,
)
from deployer.errors import ConfigError, UsageError
from deployer.model import EntityMapping, RuleSettings, Severity

CONFIG_NAME = "sentinel-deployer.toml"
PIPELINES = ("sentinel_asim", "azure_monitor", "microsoft_xdr")
# The environment when none is configured (or none named): the local workspace emulator.
DEFAULT_ENVIRONMENT = "local"
CLOUDS = ("AzureCloud", "AzureUSGovernment", "AzureChinaCloud")
# default: DefaultAzureCredential; token: the bearer token in SENTINEL_DEPLOYER_TOKEN.
CREDENTIALS = ("default", "cli", "workload-identity", "managed-identity", "token")
DEFAULT_PIPELINE = "sentinel_asim"

# One layer of rule settings: (field of RuleSettings, parsed value) pairs, in file order.
SettingsLayer = tuple[tuple[str, Any], ...]

_BOOLS = (
    "enabled",
    "suppression_enabled",
    "create_incident",
    "grouping_enabled",
    "grouping_reopen_closed_incident",
)
_DURATIONS = ("query_frequency", "query_period", "suppression_duration", "grouping_lookback")
_CHOICES: Mapping[str, tuple[str, ...]] = {
    "trigger_operator": TRIGGER_OPERATORS,
    "grouping_matching_method": MATCHING_METHODS,
    "event_grouping": EVENT_GROUPING_KINDS,
}
SETTING_NAMES = tuple(f.name for f in dataclasses.fields(RuleSettings))


@dataclass(frozen=True)
class Environment:
    """One Sentinel workspace to deploy to, and how rules differ there."""

    name: str
    pipeline: str | None = None
    api_version: str | None = None
    subscription_id: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    overrides: SettingsLayer = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    cloud: str = "AzureCloud"
    # Overrides the cloud's Resource Manager URL (sovereign clouds, Azure Stack, tests).
    arm_endpoint: str | None = None
    credential: str = "default"
    # Deploy to the local workspace emulator started in process (no Azure account needed).
    emulator: bool = False
    # Writes in flight at once; Azure's own limit is a token bucket per principal.
    concurrency: int = 8


@dataclass(frozen=True)
class ProjectConfig:
    """Everything the file says, with paths made absolute against the file's folder."""

    root: Path
    path: Path | None = None
    # Names this project in the ownership line of every rule it deploys (see ownership.py).
    name: str = "rules"
    rules_dir: Path = Path("rules")
    templates_dir: Path | None = None
    out_dir: Path = Path("build")
    pipeline: str = DEFAULT_PIPELINE
    api_version: str = GA_API_VERSION
    # A rule without detection tests is an error rather than a warning.
    require_tests: bool = False
    defaults: SettingsLayer = ()
    environments: Mapping[str, Environment] = field(default_factory=dict)

    def environment(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none are configured"
            where = self.path or CONFIG_NAME
            raise UsageError(f"{where}: no environment '{name}' (known: {known})") from None


def find_config(start: Path) -> Path | None:
    """The nearest `sentinel-deployer.toml` in `start` or a folder above it."""
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None, *, cwd: Path) -> ProjectConfig:
    """Read and check the project file; with no file, the defaults rooted at `cwd`."""
    if path is None:
        return ProjectConfig(
            root=cwd, name=cwd.resolve().name, rules_dir=cwd / "rules", out_dir=cwd / "build"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    return _parse(raw, path)


def parse_settings(raw: Mapping[str, Any], where: str) -> tuple[SettingsLayer, list[str]]:
    """Check one layer of rule settings; returns the layer and one message per bad field."""
    layer: list[tuple[str, Any]] = []
    errors: list[str] = []
    for key, value in raw.items():
        try:
            layer.append((key, _setting(key, value)))
        except (TypeError, ValueError) as error:
            errors.append(f"{where}.{key}: {error}")
    return tuple(layer), errors


def apply_settings(base: RuleSettings, *layers: SettingsLayer) -> RuleSettings:
    """The settings after each layer in turn has replaced the fields it names."""
    values: dict[str, Any] = {}
    for layer in layers:
        values.update(layer)
    return dataclasses.replace(base, **values)


def _parse(raw: Mapping[str, Any], path: Path) -> ProjectConfig:
    errors: list[str] = []
    root = path.parent
    _unknown(raw, ("project", "defaults", "environments"), "", errors)
    project = _table(raw, "project", "", errors)
    _unknown(
        project,
        ("name", "rules", "templates", "out", "pipeline", "api_version", "require_tests"),
        "project.",
        errors,
    )
    require_tests = project.get("require_tests", False)
    if not isinstance(require_tests, bool):
        errors.append(f"project.require_tests: expected true or false, got {require_tests!r}")
        require_tests = False
    defaults, default_errors = parse_settings(_table(raw, "defaults", "", errors), "defaults")
    errors.extend(default_errors)
    environments = {
        name: _environment(name, table, errors)
        for name, table in _table(raw, "environments", "", errors).items()
    }
    templates = _string(project, "templates", "project.", errors)
    config = ProjectConfig(
        root=root,
        path=path,
        name=_string(project, "name", "project.", errors) or root.resolve().name,
        rules_dir=root / (_string(project, "rules", "project.", errors) or "rules"),
        templates_dir=root / templates if templates else None,
        out_dir=root / (_string(project, "out", "project.", errors) or "build"),
        pipeline=_pipeline(project, "project.", errors) or DEFAULT_PIPELINE,
        api_version=_api_version(project, "project.", errors) or GA_API_VERSION,
        require_tests=require_tests,
        defaults=defaults,
        environments=environments,
    )
    if errors:
        raise ConfigError(f"{path}: " + f"\n{path}: ".join(errors))
    return config


def _environment(name: str, raw: Any, errors: list[str]) -> Environment:
    where = f"environments.{name}."
    if not isinstance(raw, Mapping):
        errors.append(f"environments.{name}: expected a table")
        return Environment(name=name)
    # Keys the deploy stage reads are accepted here so that one file serves both stages.
    known = (
        "pipeline",
        "api_version",
        "subscription_id",
        "resource_group",
        "workspace",
        "cloud",
        "arm_endpoint",
        "credential",
        "emulator",
        "include",
        "exclude",
        "overrides",
        "concurrency",
    )
    _unknown(raw, known, where, errors)
    emulator = raw.get("emulator", False)
    if not isinstance(emulator, bool):
        errors.append(f"{where}emulator: expected true or false, got {emulator!r}")
    concurrency = raw.get("concurrency", 8)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        errors.append(f"{where}concurrency: expected a whole number of at least 1")
        concurrency = 8
    if not emulator:
        for key in ("subscription_id", "resource_group", "workspace"):
            if not raw.get(key):
                errors.append(f"{where}{key}: required (or set emulator = true)")
    overrides, override_errors = parse_settings(
        _table(raw, "overrides", where, errors), f"{where}overrides"
    )
    errors.extend(override_errors)
    return Environment(
        name=name,
        pipeline=_pipeline(raw, where, errors),
        api_version=_api_version(raw, where, errors),
        subscription_id=_string(raw, "subscription_id", where, errors),
        resource_group=_string(raw, "resource_group", where, errors),
        workspace=_string(raw, "workspace", where, errors),
        overrides=overrides,
        include=_strings(raw, "include", where, errors),
        exclude=_strings(raw, "exclude", where, errors),
        cloud=_choice_of(raw, "cloud", CLOUDS, where, errors) or "AzureCloud",
        arm_endpoint=_https_url(raw, "arm_endpoint", where, errors),
        credential=_choice_of(raw, "credential", CREDENTIALS, where, errors) or "default",
        emulator=emulator is True,
        concurrency=concurrency,
    )


def _choice_of(
    raw: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str, errors: list[str]
) -> str | None:
    value = _string(raw, key, where, errors)
    if value is not None and value not in choices:
        errors.append(f"{where}{key}: {value!r} is not one of {', '.join(choices)}")
        return None
    return value


def _https_url(raw: Mapping[str, Any], key: str, where: str, errors: list[str]) -> str | None:
    value = _string(raw, key, where, errors)
    if value is not None and not value.startswith("https://"):
        # azure-core refuses to send bearer tokens over plain http, and so do we.
        errors.append(f"{where}{key}: must be an https:// URL")
        return None
    return value


def _setting(key: str, value: Any) -> Any:
    if key not in SETTING_NAMES:
        raise ValueError(f"unknown setting; known: {', '.join(SETTING_NAMES)}")
    if key in _BOOLS:
        return _typed(value, bool, "true or false")
    if key in _DURATIONS:
        return parse_duration(_typed(value, str, "an ISO 8601 duration such as PT1H"))
    if key in _CHOICES:
        return _choice(value, _CHOICES[key])
    if key == "trigger_threshold":
        return _typed(value, int, "an integer")
    if key == "severity":
        return Severity(_choice(value, tuple(s.value for s in Severity)))
    if key == "display_name_prefix":
        return _typed(value, str, "a string")
    if key == "custom_details":
        return _custom_details(value)
    return _entity_mappings(value)


def _typed(value: Any, kind: type, wanted: str) -> Any:
    # bool is an int in Python; a threshold of `true` is still a mistake.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {wanted}, got {value!r}")
    return value


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    for choice in choices:
        if isinstance(value, str) and value.lower() == choice.lower():
            return choice
    raise ValueError(f"{value!r} is not one of {', '.join(choices)}")


def _custom_details(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("expected a table of detail name = column name")
    return tuple(value.items())


def _entity_mappings(value: Any) -> tuple[EntityMapping, ...]:
    if not isinstance(value, list):
        raise TypeError(
            "expected a list of {entity = 'Host', fields = {HostName = 'Column'}} entries"
        )
    mappings = []
    for i, item in enumerate(value):
        entity = item.get("entity") if isinstance(item, Mapping) else None
        fields = item.get("fields") if isinstance(item, Mapping) else None
        if entity not in ENTITY_TYPES:
            raise ValueError(f"[{i}].entity: {entity!r} is not one of {', '.join(ENTITY_TYPES)}")
        if not isinstance(fields, Mapping) or not fields:
            raise TypeError(f"[{i}].fields: expected identifier = column pairs")
        pairs = tuple((str(k), str(v)) for k, v in fields.items())
        mappings.append(EntityMapping(entity_type=entity, field_mappings=pairs))
    return tuple(mappings)


def _table(raw: Mapping[str, Any], key: str, where: str, errors: list[str]) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        errors.append(f"{where}{key}: expected a table")
        return {}
    return value


def _string(raw: Mapping[str, Any], key: str, where: str, errors: list[str]) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        errors.append(f"{where}{key}: expected a string, got {value!r}")
        return None
    return value


def _strings(raw: Mapping[str, Any], key: str, where: str, errors: list[str]) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(f"{where}{key}: expected a list of rule ids")
        return ()
    return tuple(value)


def _pipeline(raw: Mapping[str, Any], where: str, errors: list[str]) -> str | None:
    value = _string(raw, "pipeline", where, errors)
    if value is not None and value not in PIPELINES:
        errors.append(f"{where}pipeline: '{value}' is not one of {', '.join(PIPELINES)}")
        return None
    return value


def _api_version(raw: Mapping[str, Any], where: str, errors: list[str]) -> str | None:
    value = _string(raw, "api_version", where, errors)
    if value is not None and value not in API_VERSIONS:
        errors.append(
            f"{where}api_version: '{value}' is not supported; use one of "
            + ", ".join(sorted(API_VERSIONS))
        )
        return None
    return value


def _unknown(raw: Mapping[str, Any], known: tuple[str, ...], where: str, errors: list[str]) -> None:
    for key in raw:
        if key not in known:
            errors.append(f"{where}{key}: unknown key; known: {', '.join(known)}")
