"""Worker processes for the build: rule files converted on every core, results in file order.

Each worker has pySigma loaded once (forked from the build, or imported at start where processes
are spawned) and reuses its backends; the build starts them before any rule is parsed.
With one job (or a handful of rules, where starting a process costs more than it saves) rules
are built in this process, by the same code.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from deployer.outcome import BuildSettings, RuleOutcome

if TYPE_CHECKING:
    from deployer.convert import Converter
    from deployer.rulebuild import RuleBuilder

logger = logging.getLogger(__name__)

# Beyond four workers, a build is bound by the one Kusto.Language process and memory grows
# by about 100 MB a worker.
MAX_DEFAULT_JOBS = 4
# Below this many rules to build, the rules are built in this process: a worker's start-up
# (about half a second of imports) costs more than it saves.
MIN_RULES_PER_WORKER = 16
# Work is handed out in chunks: several per worker, so that results come back (and their
# queries are checked) while the others are converted, and no worker idles at the end.
CHUNKS_PER_WORKER = 8


def default_jobs() -> int:
    """The number of CPUs this process may use, at most MAX_DEFAULT_JOBS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_JOBS))


class BuildWorkers:
    """A pool of build worker processes, started on first need and reused until closed."""

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = max(1, jobs if jobs is not None else default_jobs())
        self._pool: ProcessPoolExecutor | None = None
        self._starting: list[Future[int]] = []
        self._converter: Converter | None = None

    def start(self) -> None:
        """Start the worker processes now (they load pySigma while the caller goes on)."""
        if self.jobs == 1 or self._pool is not None:
            return
        if "fork" in multiprocessing.get_all_start_methods():
            # Forked workers start in milliseconds and share the parent's pages until they
            # write to them; pySigma is loaded here first, so that they share it too.
            # NOTE: the build starts them before Kusto.Language's reader threads exist; in
            # plan and deploy the embedded emulator's thread may run, which a child never uses
            # (logging and import locks are reset in the child by Python itself).
            importlib.import_module("deployer.rulebuild")
            context: BaseContext = multiprocessing.get_context("fork")
        else:
            context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=context, initializer=_start_worker
        )
        # A spawning pool starts a process per task while none is idle (a forking one starts
        # them all at the first task): one task each starts them all now.
        self._starting = [self._pool.submit(os.getpid) for _ in range(self.jobs)]

    def build(self, settings: BuildSettings, paths: Sequence[Path]) -> Iterator[RuleOutcome]:
        """The outcome of each file, in the order of `paths`, as they become available."""
        if self.jobs == 1 or len(paths) < MIN_RULES_PER_WORKER:
            yield from self._build_here(settings, paths)
            return
        self.start()
        assert self._pool is not None
        size = max(1, -(-len(paths) // (self.jobs * CHUNKS_PER_WORKER)))
        chunks = [tuple(paths[i : i + size]) for i in range(0, len(paths), size)]
        digest = settings.digest()
        for outcomes in self._pool.map(_build_chunk, [(settings, digest, c) for c in chunks]):
            yield from outcomes

    def pids(self) -> set[int]:
        """The process ids of the workers (started so far), waiting for their start-up."""
        return {future.result() for future in self._starting}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _build_here(self, settings: BuildSettings, paths: Sequence[Path]) -> Iterator[RuleOutcome]:
        from deployer.convert import Converter  # noqa: PLC0415 - see _builder
        from deployer.rulebuild import RuleBuilder  # noqa: PLC0415

        if self._converter is None:
            self._converter = Converter()
        builder = RuleBuilder(settings, self._converter)
        for path in paths:
            yield builder.build(path)


# --- inside a worker process ----------------------------------------------------------------

# One worker's state: the converter (its backends) and a builder per settings digest.
_converter: Converter | None = None
_builders: dict[str, RuleBuilder] = {}


def _start_worker() -> None:
    """Runs first in each worker process: loads pySigma and the kusto backend, once."""
    # NOTE: pySigma is imported here and in _build_here, not at the top: the build process
    # itself never needs it when every rule comes from the cache.
    from deployer.convert import Converter  # noqa: PLC0415

    global _converter  # noqa: PLW0603 - the state of this worker process, made once
    _converter = Converter()


def _build_chunk(task: tuple[BuildSettings, str, tuple[Path, ...]]) -> list[RuleOutcome]:
    from deployer.convert import Converter  # noqa: PLC0415 - loaded by _start_worker already
    from deployer.rulebuild import RuleBuilder  # noqa: PLC0415

    settings, digest, paths = task
    builder = _builders.get(digest)
    if builder is None:
        builder = RuleBuilder(settings, _converter or Converter())
        _builders[digest] = builder
    return [builder.build(path) for path in paths]
