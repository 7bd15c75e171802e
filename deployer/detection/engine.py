"""The KQL engine for detection tests: duckdb-kql on DuckDB, behind one small interface.

duckdb-kql translates KQL to DuckDB SQL. Where Kusto and that engine differ in a way a
detection can see, this module makes the engine answer as Kusto does:
- Kusto strings are never null (an absent value is ""), so string columns are filled with "";
  `isnull()` on a string is then false, as in Kusto ("Null values", Kusto scalar data types).
- `contains`, `startswith`, `endswith`, `=~`, `in~` and `has` ignore case in Kusto; duckdb-kql
  translates them to case-insensitive SQL already (tests/detection_rules prove it).
- `ipv4_is_in_range(column, "a.b.c.d/n")`, which duckdb-kql 1.1.2 does not translate, becomes a
  range test on `parse_ipv4`, which it does; an invalid range is null in Kusto, so no match.
- Regular expressions: Kusto and DuckDB both use RE2, so `matches regex` needs no rewriting.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import duckdb_kql

from deployer.errors import DeployerError

# The column that tells which event a result row came from; no real table has it.
EVENT_COLUMN = "SentinelDeployerEventIndex"

_DUCKDB_TYPES: Mapping[str, str] = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "datetime": "TIMESTAMP",
    "timespan": "INTERVAL",
    "dynamic": "JSON",
    # Kusto's guid has no operators a detection uses beyond equality on its text form.
    "guid": "VARCHAR",
}
_IPV4_IN_RANGE = re.compile(r'ipv4_is_in_range\(\s*([A-Za-z_]\w*)\s*,\s*"([^"\\]*)"\s*\)')


class EngineError(DeployerError):
    """The engine could not run a query on the events (the message says why)."""


class EventEngine:
    """One DuckDB connection; each run builds the table afresh from the events given."""

    def __init__(self) -> None:
        self._connection = duckdb_kql.connect()

    def close(self) -> None:
        self._connection.close()

    def matching(
        self,
        query: str,
        *,
        table: str,
        columns: Mapping[str, str],
        events: Sequence[Mapping[str, Any]],
    ) -> tuple[int, ...]:
        """Indexes of the events the query returns; `columns` maps names to Kusto types."""
        unknown = sorted({name for event in events for name in event} - set(columns))
        if unknown:
            raise EngineError(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a column of "
                f"{table}; use the table's column names"
            )
        self._load(table, columns, events)
        try:
            relation = duckdb_kql.kql(self._connection, kusto_compatible(query))
            if EVENT_COLUMN not in relation.columns:
                raise EngineError(
                    "the query does not return the table's rows, so its matches cannot be told "
                    "apart; detection tests need a query that filters rows"
                )
            rows = relation.select(EVENT_COLUMN).fetchall()
        except duckdb_kql.KqlError as error:
            raise EngineError(f"the test engine cannot run this query: {error}") from error
        except duckdb.Error as error:
            raise EngineError(f"the test engine failed on this query: {error}") from error
        return tuple(sorted(int(row[0]) for row in rows))

    def _load(
        self, table: str, columns: Mapping[str, str], events: Sequence[Mapping[str, Any]]
    ) -> None:
        names = list(columns)
        definition = ", ".join(
            f"{_quote(name)} {_DUCKDB_TYPES.get(columns[name], 'VARCHAR')}" for name in names
        )
        self._connection.execute(
            f"CREATE OR REPLACE TABLE {_quote(table)} ({definition}, {_quote(EVENT_COLUMN)} BIGINT)"
        )
        placeholders = ", ".join("?" for _ in range(len(names) + 1))
        rows = [
            [_cell(event.get(name), columns[name]) for name in names] + [index]
            for index, event in enumerate(events)
        ]
        if rows:
            self._connection.executemany(
                f"INSERT INTO {_quote(table)} VALUES ({placeholders})", rows
            )


def kusto_compatible(query: str) -> str:
    """The query with the constructs duckdb-kql cannot translate rewritten as Kusto means them."""
    return _IPV4_IN_RANGE.sub(_ipv4_range_test, query)


def _ipv4_range_test(match: re.Match[str]) -> str:
    column, text = match.group(1), match.group(2)
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        # Kusto: null when a range cannot be parsed, which `where` treats as false.
        return "false"
    low, high = int(network.network_address), int(network.broadcast_address)
    return f"(parse_ipv4({column}) >= {low} and parse_ipv4({column}) <= {high})"


def _cell(value: Any, kusto_type: str) -> Any:
    if kusto_type in ("string", "guid"):
        # Kusto strings are never null: an absent value is the empty string.
        return "" if value is None else str(value)
    if kusto_type == "dynamic" and value is not None:
        return json.dumps(value)
    return value


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
