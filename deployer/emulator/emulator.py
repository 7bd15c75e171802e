"""The local workspace emulator's public handle: start, stop, faults, request log, test helpers.

It ties the HTTPS server, the alertRules API, the store and fault injection together; the
certificate authority lives as long as the object, so a restarted emulator is still trusted.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme

from deployer.emulator import resources
from deployer.emulator.api import AlertRulesApi
from deployer.emulator.arm import ArmError, Options, Request, Response
from deployer.emulator.faults import Decision, FaultInjector, Faults
from deployer.emulator.resources import WorkspaceRef
from deployer.emulator.server import POLL_INTERVAL_S, TlsServer
from deployer.emulator.store import Store

logger = logging.getLogger(__name__)

CA_FILE = "ca.pem"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the emulator saw it; status 0 when the connection was dropped."""

    method: str
    path: str
    status: int
    api_version: str | None


class Emulator:
    """An HTTPS server on 127.0.0.1 that answers Sentinel alertRules calls as ARM does."""

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        port: int = 0,
        faults: Faults | None = None,
        enforce_rule_limit: bool = True,
        duration_style: str = "canonical",
        workspaces: set[tuple[str, str, str]] | None = None,
        read_only: bool = False,
        page_size: int = 50,
        accepted_token: str | None = None,
        request_log: Path | None = None,
    ) -> None:
        if duration_style not in resources.DURATION_STYLES:
            raise ValueError(f"duration_style must be one of {resources.DURATION_STYLES}")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.faults = faults if faults is not None else Faults()
        self.requests: list[LoggedRequest] = []
        self._log_lock = threading.Lock()
        # Each request also as a JSON line in this file, for a client in another process.
        self._request_log = request_log
        self._store = Store(state_dir)
        self._api = AlertRulesApi(
            self._store,
            Options(
                enforce_rule_limit=enforce_rule_limit,
                duration_style=duration_style,
                workspaces=frozenset(workspaces) if workspaces is not None else None,
                read_only=read_only,
                page_size=page_size,
                accepted_token=accepted_token,
            ),
        )
        self._injector = FaultInjector()
        self._ca = trustme.CA()
        self._certificate = self._ca.issue_cert(HOST, "localhost")
        # Without a state folder the CA goes to a temporary folder removed with this object.
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="sentinel-emulator-")
            state_dir = Path(self._temporary.name)
        self.ca_path = state_dir / CA_FILE
        self._port = port
        self._server: TlsServer | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    @property
    def url(self) -> str:
        """The base URL, https://127.0.0.1:<port>; known once the emulator has started."""
        if self._port == 0:
            raise RuntimeError("the emulator has no port yet: start it first")
        return f"https://{HOST}:{self._port}"

    def start(self) -> None:
        """Load the saved state and serve in a daemon thread; does nothing when running."""
        with self._lifecycle:
            if self._server is not None:
                return
            self._store.load()
            self.ca_path.parent.mkdir(parents=True, exist_ok=True)
            self._ca.cert_pem.write_to_path(str(self.ca_path))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._certificate.configure_cert(context)
            # A restart binds the port of the first start again, so the url stays valid.
            server = TlsServer((HOST, self._port), context, self._respond)
            self._port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                args=(POLL_INTERVAL_S,),
                name=f"emulator-{self._port}",
                daemon=True,
            )
            self._thread.start()
        logger.debug("emulator serving on %s", self.url)

    def stop(self) -> None:
        """Stop serving and close open connections; the state stays (on disk with state_dir)."""
        with self._lifecycle:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Start if needed and block until Ctrl-C or `stop()` from another thread."""
        self.start()
        thread = self._thread
        try:
            while thread is not None and thread.is_alive():
                thread.join(timeout=0.5)
        except KeyboardInterrupt:
            logger.debug("emulator interrupted")
        finally:
            self.stop()

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def clear_log(self) -> None:
        """Forget the requests logged so far (the list object stays the same)."""
        with self._log_lock:
            self.requests.clear()

    def rules(
        self, subscription: str, resource_group: str, workspace: str
    ) -> dict[str, dict[str, Any]]:
        """The stored rules of a workspace by name: as sent, plus id, etag and lastModifiedUtc.

        Raises ValueError for a workspace outside `workspaces`, as put_raw does.
        """
        ref = self._workspace(subscription, resource_group, workspace)
        return {str(rule["name"]): rule for rule in self._store.list(ref)}

    def put_raw(
        self,
        subscription: str,
        resource_group: str,
        workspace: str,
        rule_id: str,
        resource: dict[str, Any],
    ) -> None:
        """Store a rule unchecked, as if made elsewhere (the portal), with a new etag."""
        ref = self._workspace(subscription, resource_group, workspace)
        with self._store.locked():
            existing = self._store.get(ref, rule_id)
            name = str(existing["name"]) if existing is not None else rule_id
            stored = copy.deepcopy(resource)
            stored.setdefault("kind", "Scheduled")
            stored.update(
                id=resources.rule_id(ref, name),
                name=name,
                type=resources.RESOURCE_TYPE,
                etag=resources.new_etag(),
            )
            if isinstance(stored.get("properties"), dict):
                stored["properties"]["lastModifiedUtc"] = resources.utc_now()
            self._store.put(ref, stored)

    def _workspace(self, subscription: str, resource_group: str, workspace: str) -> WorkspaceRef:
        try:
            return self._api.workspace_ref((subscription, resource_group, workspace))
        except ArmError as error:
            raise ValueError(error.message) from error

    def _respond(self, request: Request) -> Response | None:
        """Faults first, then the API; None drops the connection."""
        decision = self._injector.decide(self.faults, request.method)
        if decision.latency_s > 0:
            time.sleep(decision.latency_s)
        if decision.drop_before:
            self._log(request, 0)
            return None
        response = self._answer(request, decision)
        if decision.drop_after:
            self._log(request, 0)
            return None
        self._log(request, response.status)
        return response

    def _answer(self, request: Request, decision: Decision) -> Response:
        refusal = decision.refusal
        if refusal is not None:
            body = {"error": {"code": refusal.code, "message": refusal.message}}
            return Response(refusal.status, body, (("Retry-After", str(refusal.retry_after)),))
        try:
            return self._api.handle(request)
        except Exception:
            # Deliberately broad: a bug in the emulator must answer 500, as a service would,
            # rather than leave the client waiting on a dead connection.
            logger.exception("emulator failed on %s %s", request.method, request.path)
            message = "The emulator failed to handle the request; see its log."
            return Response(500, {"error": {"code": "InternalServerError", "message": message}})

    def _log(self, request: Request, status: int) -> None:
        entry = LoggedRequest(
            request.method, request.path, status, request.query.get("api-version")
        )
        with self._log_lock:
            self.requests.append(entry)
            if self._request_log is not None:
                with self._request_log.open("a", encoding="utf-8") as stream:
                    stream.write(json.dumps(dataclasses.asdict(entry)) + "\n")
        logger.debug("%s %s -> %s", request.method, request.path, status or "dropped")


def serve(state_dir: Path, port: int) -> None:
    """Run an emulator in the foreground until Ctrl-C, keeping its state in `state_dir`."""
    Emulator(state_dir=state_dir, port=port).serve_forever()
