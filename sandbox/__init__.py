"""The Redox sandbox: a local, stateful, strict fake of the Redox Platform API.

Follows ``docs/redox-api.md``: JWT client-assertion token endpoint, destinations, auth
credentials and log search under ``/platform``, a rolling rate limit, fault injection, and
``/_sandbox`` control endpoints for tests, the demo and benchmarks. Around it, what a
deployment has (``idp-api.md``): Okta- and Entra-style IdPs under ``/idp`` and simulated
deliveries that fetch a token with each destination's credential the way Redox does.
"""

from __future__ import annotations

from sandbox.client import SandboxControl
from sandbox.config import FaultConfig, SandboxConfig
from sandbox.keys import KeyPair, generate_keypair
from sandbox.server import SandboxThread, create_app, run_sandbox, runtime_for

__all__ = [
    "FaultConfig",
    "KeyPair",
    "SandboxConfig",
    "SandboxControl",
    "SandboxThread",
    "create_app",
    "generate_keypair",
    "run_sandbox",
    "runtime_for",
]
