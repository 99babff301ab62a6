"""Building and running the sandbox: create_app, run_sandbox (blocking), SandboxThread.

One app serves the Redox fake (``/v2/auth/token``, ``/platform``), the IdP fakes (``/idp``)
and the control endpoints (``/_sandbox``); its lifespan runs the simulated deliveries.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from sandbox.auth import token_endpoint
from sandbox.client import SandboxControl
from sandbox.config import SandboxConfig
from sandbox.control import control_routes
from sandbox.delivery_control import delivery_control_routes
from sandbox.faults import TrafficMiddleware
from sandbox.idp.control import idp_control_routes
from sandbox.idp.entra_graph import graph_routes
from sandbox.idp.entra_token import entra_token_routes
from sandbox.idp.errors import idp_unrouted
from sandbox.idp.okta import okta_routes
from sandbox.idp.okta_token import okta_token_routes
from sandbox.idp.traffic import IdpTrafficMiddleware
from sandbox.log_search import log_routes
from sandbox.replies import error_response
from sandbox.routes import platform_routes
from sandbox.runtime import SandboxRuntime, shown_host

__all__ = ["SandboxThread", "create_app", "run_sandbox", "runtime_for"]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    idp_reply = idp_unrouted(request.url.path, exc.status_code)
    if idp_reply is not None:
        return idp_reply
    return error_response(exc.status_code, headers=exc.headers)


def create_app(config: SandboxConfig) -> Starlette:
    """A fresh sandbox app with its own state (seeded with ``config.seed`` destinations).

    With ``config.idp`` and an ephemeral port (0) the seed waits until the port is known
    (:meth:`SandboxRuntime.set_base_url`, which :class:`SandboxThread` calls).
    """
    runtime = SandboxRuntime(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.deliveries.start()
        try:
            yield
        finally:
            await runtime.deliveries.stop()

    app = Starlette(
        routes=[
            Route("/v2/auth/token", token_endpoint, methods=["POST"]),
            Mount("/platform", routes=[*platform_routes(), *log_routes()]),
            # An Okta org (management API, ``default`` custom authorization server) and an
            # Entra tenant (v2.0 token endpoint, Graph under /graph/v1.0).
            Mount("/idp/okta", routes=[*okta_routes(), *okta_token_routes()]),
            Mount("/idp/entra", routes=[*entra_token_routes(), *graph_routes()]),
            Mount(
                "/_sandbox",
                routes=[*control_routes(), *idp_control_routes(), *delivery_control_routes()],
            ),
        ],
        middleware=[
            Middleware(TrafficMiddleware, runtime=runtime),
            Middleware(IdpTrafficMiddleware, runtime=runtime),
        ],
        exception_handlers={404: _http_error, 405: _http_error},
        lifespan=lifespan,
    )
    app.state.sandbox = runtime
    return app


def runtime_for(app: Starlette) -> SandboxRuntime:
    """The live runtime (state, journal, faults) of an app made by create_app."""
    runtime = app.state.sandbox
    assert isinstance(runtime, SandboxRuntime)
    return runtime


def _uvicorn_config(app: Starlette, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=1,
    )


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (OSError if it cannot be)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only then.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def run_sandbox(config: SandboxConfig, *, app: Starlette | None = None) -> None:
    """Serve until interrupted (for the CLI and subprocesses).

    With port 0 the socket is bound first, so the app learns its URL before serving.
    """
    served = app if app is not None else create_app(config)
    server = uvicorn.Server(_uvicorn_config(served, config.host, config.port, config.log_level))
    runtime = runtime_for(served)
    if runtime.base_url is not None:
        server.run()
        return
    sock = _bind(config.host, config.port)
    runtime.set_base_url(f"http://{shown_host(config.host)}:{sock.getsockname()[1]}")
    server.run(sockets=[sock])


class SandboxThread:
    """Runs the sandbox in a daemon thread for the length of a ``with`` block.

    Listens on ``port`` (default 0: an ephemeral port); ``config.port`` is not used. The
    socket is bound before the server starts, so the app knows its own URL (IdP seeding).
    """

    def __init__(
        self, config: SandboxConfig, *, port: int = 0, start_timeout: float = 10.0
    ) -> None:
        self.config = config
        self.app = create_app(dataclasses.replace(config, port=0))
        self.runtime = runtime_for(self.app)
        self._server = uvicorn.Server(
            _uvicorn_config(self.app, config.host, port, config.log_level)
        )
        self._start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._control: SandboxControl | None = None
        self.port = port

    @property
    def url(self) -> str:
        """``http://host:port`` of the running sandbox."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Platform API base URL (``<url>/platform``)."""
        return f"{self.url}/platform"

    @property
    def token_url(self) -> str:
        """Token endpoint, also the ``aud`` client assertions must carry."""
        return f"{self.url}/v2/auth/token"

    @property
    def control(self) -> SandboxControl:
        """Client for the ``/_sandbox`` endpoints (closed when the sandbox stops)."""
        if self._control is None:
            self._control = SandboxControl(self.url)
        return self._control

    def start(self) -> SandboxThread:
        """Start serving; return once the port accepts requests (RuntimeError if it cannot)."""
        try:
            sock = _bind(self.config.host, self.port)
        except OSError as exc:
            raise RuntimeError(
                f"sandbox could not start on {self.config.host}:{self.port} (port in use?)"
            ) from exc
        self.port = int(sock.getsockname()[1])
        self.runtime.set_base_url(f"http://{shown_host(self.config.host)}:{self.port}")
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="redox-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                sock.close()
                raise RuntimeError(f"sandbox could not start on {self.config.host}:{self.port}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sandbox did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
