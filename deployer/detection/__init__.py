"""Detection tests: each rule proves on sample events that its KQL fires and stays silent.

A rule `X.yml` carries its cases in the sidecar `X.tests.yml` (cases.py); the exact query a
deploy would send runs against a table built from each case's event (engine.py, the one module
that knows DuckDB and duckdb-kql); runner.py puts the two together per rule.
"""
