"""Shared fixtures: the seed rule, the shared reference folders, one Kusto.Language process."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.kql import KqlLanguageService, unavailable_reason
from deployer.pipelines import table_columns
from deployer.validate import QueryValidator

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SEED_RULE = REPO / "rules/windows/process_creation/proc_creation_win_cloudflared_tunnel_run.yml"
SEED_TESTS = SEED_RULE.with_name(SEED_RULE.stem + ".tests.yml")
SEED_ID = "9a019ffc-3580-4c9d-8d87-079f7e8d3fd4"
CORPUS = SHARED / "corpus/sigmahq/process_creation"
# The seed's expected KQL: ../shared/seed is the authority; tests/data keeps a copy so that a
# clone without ../shared (GitHub's runners) still checks the query byte for byte.
SEED_QUERY_COPY = REPO / "tests/data/seed-expected-sentinel_asim.kql"
_SEED_QUERY_SHARED = SHARED / "seed/expected-sentinel_asim.kql"
SEED_QUERY_FILE = _SEED_QUERY_SHARED if _SEED_QUERY_SHARED.is_file() else SEED_QUERY_COPY


def rule_yaml(
    *,
    title: str = "Test Rule",
    rule_id: str = "11111111-2222-3333-4444-555555555555",
    detection: str = "selection:\n    CommandLine|contains: 'evil'\ncondition: selection",
    extra: str = "",
    tags: str = "    - attack.execution\n    - attack.t1059",
    level: str = "high",
) -> str:
    """A small process_creation rule in YAML, with the parts a test wants to vary."""
    return (
        f"title: {title}\n"
        f"id: {rule_id}\n"
        "status: test\n"
        "description: A rule written for a test.\n"
        f"tags:\n{tags}\n"
        "logsource:\n    category: process_creation\n    product: windows\n"
        f"detection:\n{textwrap.indent(detection, '    ')}\n"
        f"level: {level}\n"
        f"{extra}"
    )


@pytest.fixture(scope="session")
def kql_service() -> Iterator[KqlLanguageService]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"KQL validation unavailable: {reason}")
    with KqlLanguageService() as service:
        yield service


@pytest.fixture(scope="session")
def queries(kql_service: KqlLanguageService) -> QueryValidator:
    return QueryValidator(kql_service, table_columns)
