"""The local workspace emulator, spoken to over real HTTPS as Azure Resource Manager would be.

Plain `http.client` for the wire details (statuses, headers, error bodies, dropped connections);
one test drives it with the real azure-mgmt-securityinsight client.
"""

from __future__ import annotations

import copy
import http.client
import io
import json
import logging
import re
import ssl
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.securityinsight import SecurityInsightsMgmtClient

from deployer.emulator import Emulator, Faults, LoggedRequest

from swagger import reference_dir

GA = "2025-12-01"
PREVIEW = "2025-10-01-preview"
SUB = "0b5c5e1e-0000-4000-8000-000000000001"
RG = "rg-Sentinel"
WS = "ws-Sentinel"
TOKEN = "s3cret-t0ken-never-logged"
RULES = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.OperationalInsights"
    f"/workspaces/{WS}/providers/Microsoft.SecurityInsights/alertRules"
)
QUOTED_GUID = re.compile(r'"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"')
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Reply:
    """One response: status, headers (names lower-case) and the JSON body, if any."""

    def __init__(self, status: int, headers: Mapping[str, str], body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def code(self) -> str:
        return str(self.body["error"]["code"])

    @property
    def message(self) -> str:
        return str(self.body["error"]["message"])


class Client:
    """One keep-alive HTTPS connection to the emulator, trusting only its CA."""

    def __init__(self, emulator: Emulator) -> None:
        context = ssl.create_default_context(cafile=str(emulator.ca_path))
        address = urlsplit(emulator.url)
        assert address.hostname is not None
        self.connection = http.client.HTTPSConnection(
            address.hostname, address.port, context=context, timeout=10
        )

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        api_version: str | None = GA,
        token: str | None = TOKEN,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request; every reply must carry ARM's request ids."""
        if api_version is not None and "api-version=" not in path:
            path += ("&" if "?" in path else "?") + f"api-version={api_version}"
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        self.connection.request(method, path, body=payload, headers=sent)
        response = self.connection.getresponse()
        raw = response.read()
        received = {name.lower(): value for name, value in response.getheaders()}
        assert UUID.fullmatch(received.get("x-ms-request-id", "")), received
        assert "x-ms-correlation-request-id" in received
        return Reply(response.status, received, json.loads(raw) if raw else None)

    def put(self, rule: str, body: Any, **options: Any) -> Reply:
        return self.call("PUT", f"{RULES}/{rule}", body, **options)

    def close(self) -> None:
        self.connection.close()


def rule_body(name: str = "Test rule", *, enabled: bool = True) -> dict[str, Any]:
    """A small valid Scheduled rule body, as the deployer sends it."""
    return {
        "kind": "Scheduled",
        "properties": {
            "displayName": name,
            "enabled": enabled,
            "severity": "Medium",
            "query": "SecurityEvent | where EventID == 4688",
            "queryFrequency": "PT1H",
            "queryPeriod": "P1D",
            "triggerOperator": "GreaterThan",
            "triggerThreshold": 0,
            "suppressionEnabled": False,
            "suppressionDuration": "PT5H",
            "tactics": ["Execution"],
            "techniques": ["T1059"],
        },
    }


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


@pytest.fixture
def client(emulator: Emulator) -> Iterator[Client]:
    opened = Client(emulator)
    yield opened
    opened.close()


def test_a_request_without_a_bearer_token_is_401(client: Client) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
        reply = client.call("GET", RULES, token=None, headers=headers)
        assert reply.status == 401
        assert reply.code == "AuthenticationFailed"
        assert reply.headers["www-authenticate"].startswith("Bearer ")


def test_api_version_is_required_and_must_be_known(client: Client) -> None:
    missing = client.call("GET", RULES, api_version=None)
    unknown = client.call("GET", RULES, api_version="2021-10-01")

    assert (missing.status, missing.code) == (400, "MissingApiVersionParameter")
    assert (unknown.status, unknown.code) == (400, "InvalidApiVersionParameter")
    assert GA in unknown.message and PREVIEW in unknown.message


def test_create_answers_201_and_update_200_with_a_new_etag(client: Client) -> None:
    created = client.put("Rule-A", rule_body())
    updated = client.put("Rule-A", rule_body("Renamed"))
    fetched = client.call("GET", f"{RULES}/rule-a")

    assert created.status == 201
    assert created.body["id"] == f"{RULES}/Rule-A"
    assert created.body["name"] == "Rule-A"
    assert created.body["type"] == "Microsoft.SecurityInsights/alertRules"
    assert QUOTED_GUID.fullmatch(created.body["etag"])
    properties = created.body["properties"]
    assert properties["alertRuleTemplateName"] is None
    assert properties["lastModifiedUtc"].endswith("Z")
    assert {k: properties[k] for k in rule_body()["properties"]} == rule_body()["properties"]
    assert updated.status == 200
    assert updated.body["etag"] != created.body["etag"]
    assert fetched.status == 200
    assert fetched.body == updated.body


def test_fixed_path_segments_match_case_insensitively(client: Client) -> None:
    lower = RULES.replace("resourceGroups", "resourcegroups").replace("Microsoft.", "microsoft.")

    reply = client.call("PUT", f"{lower}/r1", rule_body())

    assert reply.status == 201
    assert reply.body["id"] == f"{RULES}/r1"


def test_list_pages_by_name_with_absolute_next_links(client: Client) -> None:
    names = [f"rule-{i:03d}" for i in range(120)]
    for name in reversed(names):
        assert client.put(name, rule_body(name)).status == 201

    pages: list[Reply] = [client.call("GET", RULES)]
    while "nextLink" in pages[-1].body:
        link = urlsplit(pages[-1].body["nextLink"])
        assert link.scheme == "https" and link.path == RULES
        assert "api-version=2025-12-01" in link.query and "$skipToken=" in link.query
        pages.append(client.call("GET", f"{link.path}?{link.query}"))

    assert [len(page.body["value"]) for page in pages] == [50, 50, 20]
    assert [rule["name"] for page in pages for rule in page.body["value"]] == names


def test_delete_answers_200_then_204(client: Client) -> None:
    client.put("r1", rule_body())

    first = client.call("DELETE", f"{RULES}/r1")
    second = client.call("DELETE", f"{RULES}/r1")
    gone = client.call("GET", f"{RULES}/r1")

    assert (first.status, first.body) == (200, None)
    assert (second.status, second.body) == (204, None)
    assert (gone.status, gone.code) == (404, "NotFound")


def test_etag_preconditions(client: Client) -> None:
    etag = client.put("r1", rule_body()).body["etag"]
    client.put("r1", rule_body("changed elsewhere"))
    body_with_stale_etag = {**rule_body(), "etag": etag}

    assert client.put("r1", rule_body(), headers={"If-Match": etag}).status == 412
    assert client.put("r1", body_with_stale_etag).code == "PreconditionFailed"
    assert client.put("r1", rule_body(), headers={"If-None-Match": "*"}).status == 412
    assert client.put("new", rule_body(), headers={"If-Match": "*"}).status == 412
    assert client.call("DELETE", f"{RULES}/r1", headers={"If-Match": etag}).status == 412
    current = client.call("GET", f"{RULES}/r1").body["etag"]
    assert client.put("r1", {**rule_body(), "etag": current}).status == 200


def test_a_body_that_breaks_our_model_is_400_naming_the_field(client: Client) -> None:
    body = rule_body()
    body["properties"]["severity"] = "Critical"

    reply = client.put("r1", body)

    assert (reply.status, reply.code) == (400, "BadRequest")
    assert "properties.severity" in reply.message and "Critical" in reply.message


def _official_example() -> dict[str, Any]:
    reference = reference_dir()
    if reference is None:
        pytest.skip("../shared/reference/securityinsights is absent: no official example")
    path = reference / "stable-2025-12-01/examples/alertRules/CreateScheduledAlertRule.json"
    example: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return example


def test_the_official_example_is_accepted_and_answered_like_the_example() -> None:
    example = _official_example()
    parameters = example["parameters"]
    path = (
        f"/subscriptions/{parameters['subscriptionId']}/resourceGroups/"
        f"{parameters['resourceGroupName']}/providers/Microsoft.OperationalInsights/workspaces/"
        f"{parameters['workspaceName']}/providers/Microsoft.SecurityInsights/alertRules/"
        f"{parameters['ruleId']}"
    )
    with Emulator() as emulator:
        client = Client(emulator)
        reply = client.call("PUT", path, parameters["alertRule"])
        client.close()

    expected = copy.deepcopy(example["responses"]["201"]["body"])
    for answer in (expected, reply.body):
        answer.pop("etag")
        answer["properties"].pop("lastModifiedUtc")
    assert reply.status == 201
    assert reply.body == expected


def _drop(name: str) -> Any:
    def change(properties: dict[str, Any]) -> None:
        del properties[name]

    return change


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_drop("query"), "properties.query"),
        (lambda p: p.update(queryFrequency="PT1M"), "properties.queryFrequency"),
        (lambda p: p.update(tactics=["Bogus"]), "properties.tactics[0]"),
        (lambda p: p.update(subTechniques=["T1059.001"]), "properties.subTechniques"),
    ],
    ids=["no query", "frequency PT1M", "bogus tactic", "subTechniques on GA"],
)
def test_mutations_of_the_official_example_are_rejected(
    client: Client, change: Any, named: str
) -> None:
    body = copy.deepcopy(_official_example()["parameters"]["alertRule"])
    change(body["properties"])

    reply = client.put("r1", body)

    assert (reply.status, reply.code) == (400, "BadRequest")
    assert named in reply.message


def test_sub_techniques_are_accepted_on_the_preview_and_hidden_from_ga(client: Client) -> None:
    body = rule_body()
    body["properties"]["subTechniques"] = ["T1059.001"]

    created = client.put("r1", body, api_version=PREVIEW)
    read_ga = client.call("GET", f"{RULES}/r1")

    assert created.status == 201
    assert created.body["properties"]["subTechniques"] == ["T1059.001"]
    assert "subTechniques" not in read_ga.body["properties"]


def _fill_to(emulator: Emulator, count: int) -> None:
    for i in range(count):
        emulator.put_raw(SUB, RG, WS, f"existing-{i:03d}", rule_body(f"existing {i}"))


def test_512_enabled_scheduled_rules_per_workspace(emulator: Emulator, client: Client) -> None:
    _fill_to(emulator, 511)

    assert client.put("rule-512", rule_body()).status == 201
    over = client.put("rule-513", rule_body())
    assert (over.status, over.code) == (400, "BadRequest")
    assert "512" in over.message
    assert client.put("rule-513", rule_body(enabled=False)).status == 201
    assert client.put("rule-512", rule_body("still enabled")).status == 200
    assert client.put("rule-512", rule_body(enabled=False)).status == 200
    assert client.put("rule-513", rule_body()).status == 200


def test_the_rule_limit_can_be_lifted() -> None:
    with Emulator(enforce_rule_limit=False) as emulator:
        _fill_to(emulator, 512)
        client = Client(emulator)
        assert client.put("rule-513", rule_body()).status == 201
        client.close()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = Emulator(state_dir=tmp_path)
    with first:
        client = Client(first)
        etag = client.put("r1", rule_body()).body["etag"]
        client.close()
    with first:
        client = Client(first)
        assert client.call("GET", f"{RULES}/r1").body["etag"] == etag
        client.close()
    with Emulator(state_dir=tmp_path) as second:
        client = Client(second)
        reply = client.call("GET", f"{RULES}/r1")
        client.close()

    assert (tmp_path / "state.json").is_file()
    assert first.ca_path.parent == tmp_path
    assert (reply.status, reply.body["etag"]) == (200, etag)


def test_every_request_is_429_when_the_rate_is_one(emulator: Emulator, client: Client) -> None:
    emulator.faults = Faults(rate_429=1.0, retry_after_s=0.2, seed=7)

    replies = [client.call("GET", RULES), client.put("r1", rule_body()), client.call("GET", "/x")]

    assert [(r.status, r.code, r.headers["retry-after"]) for r in replies] == [
        (429, "TooManyRequests", "1")
    ] * 3
    assert emulator.rules(SUB, RG, WS) == {}


def test_503_carries_an_arm_error_and_retry_after(emulator: Emulator, client: Client) -> None:
    emulator.faults.rate_503 = 1.0
    emulator.faults.retry_after_s = 2

    reply = client.call("GET", RULES)

    assert (reply.status, reply.code, reply.headers["retry-after"]) == (
        503,
        "ServiceUnavailable",
        "2",
    )


def test_seeded_faults_repeat(emulator: Emulator) -> None:
    def statuses() -> list[int]:
        emulator.faults = Faults(rate_429=0.5, seed=3)
        emulator.clear_log()
        client = Client(emulator)
        for _ in range(12):
            client.call("GET", RULES)
        client.close()
        return [request.status for request in emulator.requests]

    first = statuses()
    assert first == statuses()
    assert {200, 429} == set(first)


@pytest.mark.parametrize("applied", [True, False])
def test_a_dropped_write_closes_the_connection(
    emulator: Emulator, client: Client, applied: bool
) -> None:
    emulator.faults = Faults(rate_drop=1.0, drop_after_write=1.0 if applied else 0.0)

    with pytest.raises(http.client.RemoteDisconnected):
        client.put("r1", rule_body())

    assert ("r1" in emulator.rules(SUB, RG, WS)) is applied
    assert emulator.requests == [LoggedRequest("PUT", f"{RULES}/r1", 0, GA)]


def test_the_write_bucket_refuses_the_third_immediate_write(
    emulator: Emulator, client: Client
) -> None:
    emulator.faults.write_bucket = (2, 1.0)

    statuses = [client.put(f"r{i}", rule_body()).status for i in range(3)]
    refused = client.put("r9", rule_body())
    read = client.call("GET", RULES)

    assert statuses == [201, 201, 429]
    assert refused.headers["retry-after"] == "1"
    assert read.status == 200


def test_latency_is_added_to_each_request(emulator: Emulator, client: Client) -> None:
    emulator.faults.latency_s = 0.05
    started = time.monotonic()

    client.call("GET", RULES)

    assert time.monotonic() - started >= 0.05


def test_alternate_durations_are_equal_but_spelled_differently() -> None:
    body = rule_body()
    body["properties"].update(queryFrequency="PT5M", queryPeriod="PT1H")
    with Emulator(duration_style="alternate") as emulator:
        client = Client(emulator)
        properties = client.put("r1", body).body["properties"]
        client.close()

    assert (properties["queryFrequency"], properties["queryPeriod"]) == ("PT300S", "PT60M")
    assert properties["suppressionDuration"] == "PT300M"


def test_only_the_configured_workspaces_exist() -> None:
    with Emulator(workspaces={(SUB, "RG-SENTINEL", "WS-Sentinel")}) as emulator:
        client = Client(emulator)
        unknown = client.call("GET", RULES.replace(WS, "ws-other"))
        known = client.put("r1", rule_body())
        client.close()

    assert (unknown.status, unknown.code) == (404, "ResourceNotFound")
    assert "'Microsoft.OperationalInsights/workspaces/ws-other'" in unknown.message
    assert f"resource group '{RG}'" in unknown.message
    assert known.status == 201
    assert "/resourceGroups/RG-SENTINEL/" in known.body["id"]


def test_read_only_refuses_writes_naming_the_action() -> None:
    with Emulator(read_only=True) as emulator:
        client = Client(emulator)
        put = client.put("r1", rule_body())
        delete = client.call("DELETE", f"{RULES}/r1")
        listed = client.call("GET", RULES)
        client.close()

    assert (put.status, put.code) == (403, "AuthorizationFailed")
    assert "'Microsoft.SecurityInsights/alertRules/write'" in put.message
    assert "'Microsoft.SecurityInsights/alertRules/delete'" in delete.message
    assert listed.status == 200


def test_unknown_paths_and_methods_answer_arm_errors(client: Client) -> None:
    unknown = client.call("GET", "/subscriptions/x/resourceGroups/y")
    patch = client.call("PATCH", f"{RULES}/r1", {})
    not_json = client.call("PUT", f"{RULES}/r1", headers={"Content-Length": "0"})

    assert (unknown.status, unknown.code) == (404, "InvalidResourceType")
    assert (patch.status, patch.code) == (405, "MethodNotAllowed")
    assert (not_json.status, not_json.code) == (400, "InvalidRequestContent")


def test_the_token_is_never_logged(
    emulator: Emulator, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.faults.rate_drop = 0.0

    client.put("r1", rule_body())
    client.call("GET", f"{RULES}/r1")
    client.call("GET", RULES, token=None, headers={"Authorization": f"Basic {TOKEN}"})
    refused = client.call("GET", RULES, token=None, headers={"Authorization": f"Token{TOKEN}"})

    assert caplog.records, "the emulator should log at DEBUG"
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(emulator.requests)
    assert TOKEN not in json.dumps(refused.body)


def test_the_azure_sdk_works_against_it(emulator: Emulator) -> None:
    class Credential:
        def get_token(self, *scopes: str, **options: Any) -> AccessToken:
            return AccessToken("emulator-token", int(time.time()) + 3600)

    client = SecurityInsightsMgmtClient(
        Credential(),
        SUB,
        base_url=emulator.url,
        api_version=GA,
        connection_verify=str(emulator.ca_path),
    )
    body = rule_body()

    created = client.alert_rules.create_or_update(
        RG, WS, "sdk-rule", io.BytesIO(json.dumps(body).encode())
    )
    listed = [rule.as_dict() for rule in client.alert_rules.list(RG, WS)]
    client.alert_rules.delete(RG, WS, "sdk-rule")

    assert type(created).__name__ == "ScheduledAlertRule"
    assert listed == [created.as_dict()]
    assert listed[0]["properties"]["query"] == body["properties"]["query"]
    assert [(r.method, r.status) for r in emulator.requests] == [
        ("PUT", 201),
        ("GET", 200),
        ("DELETE", 200),
    ]
    assert {r.api_version for r in emulator.requests} == {GA}
