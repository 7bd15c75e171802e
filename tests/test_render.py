"""Rendering reads as a specification: a rule in, the whole ARM template out, safe for any text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployer.alertrule import scheduled_rule_problems
from deployer.analytics import RuleInputs, analytics_rule, describe
from deployer.convert import Converter
from deployer.errors import TemplateError
from deployer.model import (
    AnalyticsRule,
    EntityMapping,
    Location,
    RuleMetadata,
    RuleSettings,
    Severity,
)
from deployer.pipelines import table_columns
from deployer.render import (
    TEMPLATE_NAME,
    RenderedRule,
    Renderer,
    arm_escape,
    arm_unescape,
    default_templates_dir,
)
from deployer.rules import SigmaSource, load_rule

import swagger
from conftest import SEED_ID, SEED_QUERY_FILE, SEED_RULE, rule_yaml

GA = "2025-12-01"
PREVIEW = "2025-10-01-preview"
REFERENCE = swagger.reference_dir()
NO_REFERENCE = "Microsoft.SecurityInsights swagger not available (../shared/reference)"

TEST_ID = "11111111-2222-3333-4444-555555555555"
# German and Japanese for "monitoring - detection", joined by an en dash.
NON_ASCII = "Überwachung \u2013 検知"


@cache
def _converter() -> Converter:
    return Converter()


@cache
def _renderer() -> Renderer:
    return Renderer()


def _analytics_rule(path: Path) -> AnalyticsRule:
    """A rule file through the real pipeline: load, convert (sentinel_asim), analytics rule."""
    source = load_rule(path)
    assert isinstance(source, SigmaSource), source
    converted = _converter().convert(source.rule, "sentinel_asim")
    columns = tuple(table_columns("sentinel_asim")["imProcessCreate"])
    rule, problems = analytics_rule(
        source.metadata,
        converted,
        sentinel=source.sentinel,
        inputs=RuleInputs(table_columns=columns),
        source=source.location(),
    )
    assert problems == ()
    assert rule is not None
    return rule


def _seed_query() -> str:
    return SEED_QUERY_FILE.read_text(encoding="utf-8")


def _expected_seed_template() -> dict[str, Any]:
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"workspace": {"type": "String"}},
        "resources": [
            {
                "id": "[concat(resourceId('Microsoft.OperationalInsights/workspaces/providers', "
                "parameters('workspace'), 'Microsoft.SecurityInsights'),"
                "'/alertRules/9a019ffc-3580-4c9d-8d87-079f7e8d3fd4')]",
                "name": "[concat(parameters('workspace'),"
                "'/Microsoft.SecurityInsights/9a019ffc-3580-4c9d-8d87-079f7e8d3fd4')]",
                "type": "Microsoft.OperationalInsights/workspaces/providers/alertRules",
                "kind": "Scheduled",
                "apiVersion": "2025-12-01",
                "properties": {
                    "displayName": "Cloudflared Tunnel Execution",
                    "description": (
                        'Detects execution of the "cloudflared" tool to connect back to a '
                        "tunnel. This was seen used by threat actors to maintain persistence "
                        "and remote access to compromised networks.\n"
                        "\n"
                        "False positives:\n"
                        "- Legitimate usage of Cloudflared tunnel.\n"
                        "\n"
                        "References:\n"
                        "- https://blog.reconinfosec.com/emergence-of-akira-ransomware-group\n"
                        "- https://github.com/cloudflare/cloudflared\n"
                        "- https://developers.cloudflare.com/cloudflare-one/connections/"
                        "connect-apps"
                    ),
                    "severity": "Medium",
                    "enabled": True,
                    "query": _seed_query(),
                    "queryFrequency": "PT1H",
                    "queryPeriod": "PT1H",
                    "triggerOperator": "GreaterThan",
                    "triggerThreshold": 0,
                    "suppressionDuration": "PT5H",
                    "suppressionEnabled": False,
                    "tactics": ["CommandAndControl"],
                    "techniques": ["T1102", "T1090", "T1572"],
                    "entityMappings": [
                        {
                            "entityType": "Host",
                            "fieldMappings": [
                                {"identifier": "HostName", "columnName": "DvcHostname"}
                            ],
                        },
                        {
                            "entityType": "Account",
                            "fieldMappings": [
                                {"identifier": "FullName", "columnName": "ActorUsername"}
                            ],
                        },
                        {
                            "entityType": "Process",
                            "fieldMappings": [
                                {"identifier": "ProcessId", "columnName": "TargetProcessId"},
                                {
                                    "identifier": "CommandLine",
                                    "columnName": "TargetProcessCommandLine",
                                },
                            ],
                        },
                    ],
                    "incidentConfiguration": {
                        "createIncident": True,
                        "groupingConfiguration": {
                            "enabled": False,
                            "reopenClosedIncident": False,
                            "lookbackDuration": "PT5H",
                            "matchingMethod": "AllEntities",
                        },
                    },
                    "eventGroupingSettings": {"aggregationKind": "SingleAlert"},
                },
            }
        ],
    }


def _rule(
    *,
    display_name: str = "Test Rule",
    description: str = "A rule written for a test.",
    query: str = 'imProcessCreate\n| where TargetProcessCommandLine contains "evil"\n',
    custom_details: tuple[tuple[str, str], ...] = (),
) -> AnalyticsRule:
    """An AnalyticsRule built directly, with default settings and the parts a test varies."""
    return AnalyticsRule(
        rule_id=TEST_ID,
        display_name=display_name,
        description=description,
        severity=Severity.HIGH,
        query=query,
        pipeline="sentinel_asim",
        table="imProcessCreate",
        tactics=("Execution",),
        techniques=("T1059",),
        sub_techniques=(),
        entity_mappings=(EntityMapping("Host", (("HostName", "DvcHostname"),)),),
        settings=RuleSettings(custom_details=custom_details),
        source=Location(Path("rules/test.yml")),
    )


def _strings(value: Any, path: tuple[object, ...] = ()) -> Iterator[tuple[tuple[object, ...], str]]:
    """Every string value in a JSON document, with where it is."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _templates(tmp_path: Path, text: str) -> Renderer:
    (tmp_path / TEMPLATE_NAME).write_text(text, encoding="utf-8")
    return Renderer(tmp_path)


# --------------------------------------------------------------------------- the seed rule


def test_seed_rule_renders_to_the_whole_expected_arm_template() -> None:
    rendered = _renderer().render(_analytics_rule(SEED_RULE), api_version=GA)
    document = json.loads(rendered.text)
    assert document == _expected_seed_template()
    assert "subTechniques" not in document["resources"][0]["properties"]
    assert rendered.document == document


def test_the_file_is_the_document_indented_by_two_with_one_final_newline() -> None:
    rendered = _renderer().render(_analytics_rule(SEED_RULE), api_version=GA)
    expected = json.dumps(_expected_seed_template(), indent=2, ensure_ascii=False) + "\n"
    assert rendered.text == expected


def test_the_resource_id_and_name_are_expressions_over_the_rule_guid() -> None:
    rendered = _renderer().render(_analytics_rule(SEED_RULE), api_version=GA)
    assert rendered.rule_id == SEED_ID
    assert rendered.resource["id"].endswith(f"'/alertRules/{SEED_ID}')]")
    assert rendered.resource["name"].endswith(f"'/Microsoft.SecurityInsights/{SEED_ID}')]")


def test_seed_request_body_is_the_resource_kind_and_properties() -> None:
    rendered = _renderer().render(_analytics_rule(SEED_RULE), api_version=GA)
    expected = _expected_seed_template()["resources"][0]
    assert rendered.request_body() == {"kind": "Scheduled", "properties": expected["properties"]}


def test_seed_request_body_passes_our_model_of_the_api() -> None:
    rendered = _renderer().render(_analytics_rule(SEED_RULE), api_version=GA)
    assert scheduled_rule_problems(rendered.request_body(), GA) == []


@pytest.mark.skipif(REFERENCE is None, reason=NO_REFERENCE)
def test_seed_request_body_passes_the_official_api_description() -> None:
    rendered = _renderer().render(_analytics_rule(SEED_RULE), api_version=GA)
    assert swagger.scheduled_rule_errors(rendered.request_body(), api_version=GA) == []


# --------------------------------------------------------------------------- sub-techniques


@pytest.fixture
def sub_technique_rule(tmp_path: Path) -> AnalyticsRule:
    path = tmp_path / "process_injection.yml"
    tags = "    - attack.privilege-escalation\n    - attack.t1055.001"
    path.write_text(rule_yaml(tags=tags), encoding="utf-8")
    return _analytics_rule(path)


def test_ga_api_sends_the_parent_technique_and_no_sub_techniques(
    sub_technique_rule: AnalyticsRule,
) -> None:
    properties = _renderer().render(sub_technique_rule, api_version=GA).request_body()["properties"]
    assert properties["techniques"] == ["T1055"]
    assert "subTechniques" not in properties


def test_preview_api_sends_the_sub_technique_too(sub_technique_rule: AnalyticsRule) -> None:
    body = _renderer().render(sub_technique_rule, api_version=PREVIEW).request_body()
    assert body["properties"]["techniques"] == ["T1055"]
    assert body["properties"]["subTechniques"] == ["T1055.001"]
    assert scheduled_rule_problems(body, PREVIEW) == []
    if REFERENCE is None:
        pytest.skip(f"official preview validation not run: {NO_REFERENCE}")
    assert swagger.scheduled_rule_errors(body, api_version=PREVIEW) == []


def test_the_template_names_the_api_version_it_was_rendered_for(
    sub_technique_rule: AnalyticsRule,
) -> None:
    assert _renderer().render(sub_technique_rule, api_version=GA).resource["apiVersion"] == GA
    rendered = _renderer().render(sub_technique_rule, api_version=PREVIEW)
    assert rendered.resource["apiVersion"] == PREVIEW


# --------------------------------------------------------------------------- determinism


def test_rendering_the_same_rule_twice_gives_the_same_bytes() -> None:
    rule = _analytics_rule(SEED_RULE)
    first = Renderer().render(rule, api_version=GA)
    second = Renderer().render(_analytics_rule(SEED_RULE), api_version=GA)
    assert first.text.encode("utf-8") == second.text.encode("utf-8")


def test_a_rule_id_that_is_not_a_guid_is_refused() -> None:
    broken = replace(_rule(), rule_id="x')]', '[evil()]")
    with pytest.raises(TemplateError, match="is not a GUID"):
        _renderer().render(broken, api_version=GA)


# --------------------------------------------------------------------------- any text is safe

# Fragments that would break a naive template: ARM expressions, jinja2 syntax, JSON syntax.
TRICKY = (
    "[",
    "[[",
    "]",
    "[concat('a','b')]",
    "{{ 7*7 }}",
    "{% if %}",
    "{# x #}",
    '"',
    "'",
    "\\",
    "\\u0041",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    NON_ASCII,
    "\u2028",
    "😀",
)
texts = st.lists(st.one_of(st.text(), st.sampled_from(TRICKY)), max_size=5).map("".join)


def _arm_evaluates(text: str) -> bool:
    """ARM's own rule, written from its expression parser and Microsoft Learn ("Syntax and
    expressions in ARM templates", escape characters): a string that starts with "[" and ends
    with "]" is an expression unless it starts with "[["."""
    return text.startswith("[") and text.endswith("]") and not text.startswith("[[")


def _assert_safe(rendered: RenderedRule) -> None:
    """Valid JSON, and no string but the tool's own id/name can be evaluated by ARM."""
    assert json.loads(rendered.text) == rendered.document
    own_expressions = {("resources", 0, "id"), ("resources", 0, "name")}
    for path, value in _strings(rendered.document):
        if path in own_expressions:
            assert _arm_evaluates(value)
        else:
            assert not _arm_evaluates(value), (path, value)
            # Every string that starts with "[" and that ARM reads specially is escaped.
            if value.startswith("[") and value.endswith("]"):
                assert value.startswith("[["), (path, value)


@settings(max_examples=150, deadline=None)
@given(title=texts, description=texts, falsepositives=st.lists(texts, max_size=3))
def test_any_rule_text_renders_to_json_that_arm_cannot_evaluate(
    title: str, description: str, falsepositives: list[str]
) -> None:
    metadata = RuleMetadata(
        rule_id=TEST_ID,
        title=title,
        description=description,
        status="test",
        level="high",
        tags=(),
        references=(title, description),
        falsepositives=tuple(falsepositives),
        author=None,
    )
    rule = _rule(display_name=title, description=describe(metadata))
    rendered = _renderer().render(rule, api_version=GA)
    _assert_safe(rendered)
    properties = rendered.request_body()["properties"]
    assert properties["displayName"] == title
    assert properties["description"] == describe(metadata)


@settings(max_examples=100, deadline=None)
@given(query=texts, detail=texts)
def test_any_query_and_custom_detail_column_come_back_unchanged(query: str, detail: str) -> None:
    rendered = _renderer().render(
        _rule(query=query, custom_details=(("Detail", detail),)), api_version=GA
    )
    _assert_safe(rendered)
    properties = rendered.request_body()["properties"]
    assert properties["query"] == query
    assert properties["customDetails"] == {"Detail": detail}


@settings(max_examples=100, deadline=None)
@given(fragment=st.sampled_from(TRICKY), before=st.text(max_size=5), after=st.text(max_size=5))
def test_template_syntax_in_rule_text_stays_text(fragment: str, before: str, after: str) -> None:
    title = before + fragment + after
    rendered = _renderer().render(_rule(display_name=title), api_version=GA)
    display_name = rendered.document["resources"][0]["properties"]["displayName"]
    assert arm_unescape(display_name) == title
    assert display_name in (title, "[" + title)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_arm_unescape_undoes_arm_escape_at_any_depth(value: Any) -> None:
    assert arm_unescape(arm_escape(value)) == value


@settings(max_examples=100, deadline=None)
@given(value=json_values)
def test_arm_escape_leaves_no_string_that_arm_would_evaluate(value: Any) -> None:
    for _, text in _strings(arm_escape(value)):
        assert not _arm_evaluates(text)


# --------------------------------------------------------------------------- explicit examples


def test_a_title_that_is_an_arm_expression_is_sent_as_text() -> None:
    rendered = _renderer().render(_rule(display_name="[concat('a','b')]"), api_version=GA)
    assert rendered.resource["properties"]["displayName"] == "[[concat('a','b')]"
    assert rendered.request_body()["properties"]["displayName"] == "[concat('a','b')]"
    assert "\"displayName\": \"[[concat('a','b')]\"" in rendered.text


def test_a_bracketed_prefix_that_arm_would_not_evaluate_is_left_as_it_is() -> None:
    # ARM evaluates only "[...]"; it would keep "[[PROD] X" with both brackets, so no escape.
    rendered = _renderer().render(_rule(display_name="[PROD] Rule"), api_version=GA)
    assert rendered.resource["properties"]["displayName"] == "[PROD] Rule"
    assert rendered.request_body()["properties"]["displayName"] == "[PROD] Rule"


def test_quotes_backslashes_newlines_and_template_syntax_survive() -> None:
    description = 'Runs {{ 7*7 }} and {% if %} with "quotes", C:\\Windows\\ and\nnew lines'
    rendered = _renderer().render(_rule(description=description), api_version=GA)
    sent = rendered.request_body()["properties"]["description"]
    assert sent == description
    assert "49" not in sent
    assert r"\"quotes\", C:\\Windows\\ and\nnew lines" in rendered.text


def test_non_ascii_text_is_written_as_utf8_not_escaped() -> None:
    title = NON_ASCII
    assert not title.isascii()
    rendered = _renderer().render(_rule(display_name=title), api_version=GA)
    assert f'"displayName": "{title}"' in rendered.text
    assert "\\u" not in rendered.text
    assert rendered.request_body()["properties"]["displayName"] == title


# --------------------------------------------------------------------------- template guards


def test_a_template_that_prints_a_value_without_the_arm_filter_is_refused(
    tmp_path: Path,
) -> None:
    renderer = _templates(tmp_path, '{"resources": [{"name": "{{ rule.display_name }}"}]}\n')
    with pytest.raises(TemplateError, match="without the `arm` filter"):
        renderer.render(_rule(), api_version=GA)


@pytest.mark.parametrize(
    "expression",
    ["{{ no_such_value }}", "{{ no_such_value | arm }}", "{{ rule.no_such_value | arm }}"],
)
def test_a_template_that_uses_an_undefined_name_stops_the_render(
    tmp_path: Path, expression: str
) -> None:
    renderer = _templates(tmp_path, '{"value": ' + expression + "}\n")
    with pytest.raises(TemplateError, match="no_such_value"):
        renderer.render(_rule(), api_version=GA)


def test_arm_expression_takes_only_the_tools_own_expressions(tmp_path: Path) -> None:
    renderer = _templates(tmp_path, '{"name": {{ rule.display_name | arm_expression }}}\n')
    with pytest.raises(TemplateError, match="arm_expression only takes"):
        renderer.render(_rule(display_name="[concat('a','b')]"), api_version=GA)


def test_a_template_that_renders_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    renderer = _templates(tmp_path, '{\n  "name": {{ rule.display_name | arm }},\n}\n')
    with pytest.raises(TemplateError, match=r"does not render to JSON \(line 3, column 1"):
        renderer.render(_rule(), api_version=GA)


def test_a_template_that_does_not_compile_names_its_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=TEMPLATE_NAME):
        _templates(tmp_path, '{"name": {{ rule.display_name | arm }\n')


def test_a_templates_folder_without_the_template_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as raised:
        Renderer(tmp_path)
    assert str(tmp_path) in str(raised.value)
    assert TEMPLATE_NAME in str(raised.value)


# --------------------------------------------------------------------------- custom templates


def test_what_a_custom_template_adds_is_what_a_deploy_sends(tmp_path: Path) -> None:
    ours = (default_templates_dir() / TEMPLATE_NAME).read_text(encoding="utf-8")
    anchor = '      "properties": {\n'
    assert ours.count(anchor) == 1
    custom = ours.replace(anchor, anchor + '        "templateVersion": {{ "1.0.0" | arm }},\n')
    rule = _analytics_rule(SEED_RULE)

    default = _renderer().render(rule, api_version=GA)
    rendered = _templates(tmp_path, custom).render(rule, api_version=GA)

    assert '"templateVersion": "1.0.0"' in rendered.text
    assert '"templateVersion"' not in default.text
    body = rendered.request_body()
    assert body["properties"].pop("templateVersion") == "1.0.0"
    assert body == default.request_body()
    assert scheduled_rule_problems(rendered.request_body(), GA) == []


def test_settings_reach_the_template_in_the_apis_spelling() -> None:
    own_settings = RuleSettings(
        enabled=False,
        query_frequency=timedelta(minutes=90),
        query_period=timedelta(days=2),
        suppression_duration=timedelta(hours=24),
        grouping_lookback=timedelta(days=7),
        custom_details=(("Image", "TargetProcessName"),),
    )
    rule = replace(_rule(), settings=own_settings)
    properties = _renderer().render(rule, api_version=GA).request_body()["properties"]
    assert properties["enabled"] is False
    assert properties["queryFrequency"] == "PT1H30M"
    assert properties["queryPeriod"] == "P2D"
    assert properties["suppressionDuration"] == "P1D"
    assert properties["incidentConfiguration"]["groupingConfiguration"]["lookbackDuration"] == (
        "P7D"
    )
    assert properties["customDetails"] == {"Image": "TargetProcessName"}
