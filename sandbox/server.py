"""Building and running the sandbox: create_app, run_sandbox (blocking), SandboxThread."""

from __future__ import annotations

import threading
import time
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
from sandbox.faults import TrafficMiddleware
from sandbox.replies import error_response
from sandbox.routes import platform_routes
from sandbox.runtime import SandboxRuntime

__all__ = ["SandboxThread", "create_app", "run_sandbox", "runtime_for"]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, headers=exc.headers)


def create_app(config: SandboxConfig) -> Starlette:
    """A fresh sandbox app with its own state (seeded with ``config.seed`` destinations)."""
    runtime = SandboxRuntime(config)
    app = Starlette(
        routes=[
            Route("/v2/auth/token", token_endpoint, methods=["POST"]),
            Mount("/platform", routes=platform_routes()),
            Mount("/_sandbox", routes=control_routes()),
        ],
        middleware=[Middleware(TrafficMiddleware, runtime=runtime)],
        exception_handlers={404: _http_error, 405: _http_error},
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
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
    )


def run_sandbox(config: SandboxConfig, *, app: Starlette | None = None) -> None:
    """Serve until interrupted (for the CLI and subprocesses)."""
    served = app if app is not None else create_app(config)
    uvicorn.Server(_uvicorn_config(served, config.host, config.port, config.log_level)).run()


class SandboxThread:
    """Runs the sandbox in a daemon thread for the length of a ``with`` block.

    Listens on ``port`` (default 0: an ephemeral port); ``config.port`` is not used.
    """

    def __init__(
        self, config: SandboxConfig, *, port: int = 0, start_timeout: float = 10.0
    ) -> None:
        self.config = config
        self.app = create_app(config)
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
        self._thread = threading.Thread(target=self._server.run, name="redox-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(
                    f"sandbox could not start on {self.config.host}:{self.port} (port in use?)"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sandbox did not start in time")
            time.sleep(0.01)
        sockets = self._server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])
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
