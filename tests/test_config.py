"""The project file: defaults, environments, and one message per bad field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from deployer.config import apply_settings, find_config, load_config
from deployer.errors import ConfigError, UsageError
from deployer.model import RuleSettings, Severity


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sentinel-deployer.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_the_defaults_rooted_at_the_current_folder(tmp_path: Path) -> None:
    config = load_config(None, cwd=tmp_path)
    assert config.rules_dir == tmp_path / "rules"
    assert config.out_dir == tmp_path / "build"
    assert config.pipeline == "sentinel_asim"
    assert config.api_version == "2025-12-01"
    assert config.environments == {}


def test_the_file_is_found_in_a_parent_folder(tmp_path: Path) -> None:
    path = _config(tmp_path, "")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_config(nested) == path


def test_a_full_file_is_read_with_paths_relative_to_it(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """
[project]
rules = "detections"
templates = "my-templates"
pipeline = "microsoft_xdr"

[defaults]
query_frequency = "PT15M"
severity = "high"

[environments.prod]
subscription_id = "00000000-0000-0000-0000-000000000000"
resource_group = "rg"
workspace = "ws"
api_version = "2025-10-01-preview"
exclude = ["9a019ffc-3580-4c9d-8d87-079f7e8d3fd4"]
overrides = { enabled = false, display_name_prefix = "[PROD] " }
""",
    )
    config = load_config(path, cwd=Path("/"))
    assert config.rules_dir == tmp_path / "detections"
    assert config.templates_dir == tmp_path / "my-templates"
    assert config.pipeline == "microsoft_xdr"
    settings = apply_settings(RuleSettings(), config.defaults)
    assert settings.query_frequency == timedelta(minutes=15)
    assert settings.severity is Severity.HIGH
    prod = config.environment("prod")
    assert prod.api_version == "2025-10-01-preview"
    assert prod.exclude == ("9a019ffc-3580-4c9d-8d87-079f7e8d3fd4",)
    assert apply_settings(RuleSettings(), prod.overrides).enabled is False


def test_every_bad_field_gets_its_own_line(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """
color = "blue"
[project]
pipeline = "splunk"
[defaults]
query_frequency = "15 minutes"
trigger_threshold = true
trigger_operator = "Bigger"
[environments.prod]
api_version = "2021-10-01"
overrides = { enabld = false }
cloud = "Mars"
arm_endpoint = "http://management.example"
credential = "password"
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, cwd=tmp_path)
    lines = str(caught.value).splitlines()
    fields = [line.split(": ", 2)[1] for line in lines]
    assert sorted(fields) == [
        "color",
        "defaults.query_frequency",
        "defaults.trigger_operator",
        "defaults.trigger_threshold",
        "environments.prod.api_version",
        "environments.prod.arm_endpoint",
        "environments.prod.cloud",
        "environments.prod.credential",
        "environments.prod.overrides.enabld",
        "environments.prod.resource_group",
        "environments.prod.subscription_id",
        "environments.prod.workspace",
        "project.pipeline",
    ]
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_toml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    path = _config(tmp_path, "[defaults\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, cwd=tmp_path)


def test_an_unknown_environment_lists_the_known_ones(tmp_path: Path) -> None:
    text = "[environments.dev]\nemulator = true\n[environments.prod]\nemulator = true\n"
    config = load_config(_config(tmp_path, text), cwd=tmp_path)
    with pytest.raises(UsageError, match="known: dev, prod"):
        config.environment("staging")
