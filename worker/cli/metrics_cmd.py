"""``rotator metrics``: serve Prometheus metrics read from Redis on every scrape.

A separate exporter (not the worker) serves them: every number lives in Redis, so one
exporter covers any number of worker processes and prefork children without Prometheus'
multiprocess mode, and a worker restart neither resets a counter nor hides a gauge.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from wsgiref.simple_server import WSGIServer

import redis
import typer
from prometheus_client import CollectorRegistry, start_http_server

from worker.cli.common import console, open_runtime, settings_or_exit
from worker.errors import UsageError
from worker.logging import configure_logging, get_logger
from worker.metrics import RedisCollector
from worker.store.keys import Keys

__all__ = ["register", "serve_metrics"]

log = get_logger(__name__)


def serve_metrics(client: redis.Redis, keys: Keys, host: str, port: int) -> WSGIServer:
    """Start the HTTP exporter in a thread; return its server (call ``shutdown()`` on it)."""

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client, keys))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return server


def metrics(
    port: int = typer.Option(9808, "--port", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface (0.0.0.0 in a container, behind the network)."
    ),
) -> None:
    """Serve Prometheus metrics on http://HOST:PORT/metrics, read from Redis per scrape."""
    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level)
    runtime = open_runtime(settings)
    client = runtime.redis
    server = serve_metrics(client, runtime.keys, host, port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    console.print(f"serving Prometheus metrics on http://{shown}:{port}/metrics (Ctrl-C to stop)")
    log.info("metrics exporter started", host=host, port=port)
    stop.wait()
    server.shutdown()
    client.close()


def register(app: typer.Typer) -> None:
    """Add ``metrics``."""
    app.command("metrics")(metrics)
