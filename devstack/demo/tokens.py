"""The demo's verification tokens: a local AWS Secrets Manager as every receiver's store.

moto's server runs in the demo process; each seeded destination gets a secret holding the
token Redox (the sandbox) sends it now, and the sandbox's receiver for that destination
reads the secret's current and pending versions every second. The registry gives every
destination a ``verification_token`` policy with a 3 s hand-over, so the demo can rotate
a token (its first round does one) with no failed delivery.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import Any

from sandbox.client import SandboxControl

__all__ = ["AWS_ENV", "TokenStores", "available"]

REGION = "us-east-1"
#: Credentials for the local store (it accepts any); the worker signs with them.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
HANDOVER = "3s"


def available() -> bool:
    """Whether moto's server is installed (the sandbox extra brings it)."""
    return importlib.util.find_spec("moto") is not None


class TokenStores:
    """One secret per destination in a local Secrets Manager, read by its receiver."""

    def __init__(self, control: SandboxControl, say: Callable[[str], None]) -> None:
        self._control = control
        self._say = say
        self._server: Any = None
        self.url = ""

    def start(self, destination_ids: list[str]) -> None:
        """Start the store and hand each destination's current token to it."""
        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per store read
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        client = boto3.client(
            "secretsmanager",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )
        current = self._control.secrets()
        for destination_id in destination_ids:
            token = current[destination_id]["verificationToken"]
            client.create_secret(Name=secret_name(destination_id), SecretString=token)
            self._control.set_token_store(
                destination_id,
                endpoint_url=self.url,
                secret_id=secret_name(destination_id),
                region=REGION,
                refresh_seconds=1.0,
            )
        self._say(
            f"receivers read their verification tokens from a local Secrets Manager at {self.url}"
        )

    def registry_lines(self, destination_id: str) -> list[str]:
        """The destination's ``verification_token`` table for the demo registry."""
        sink = (
            f'{{ kind = "aws-secrets-manager", secret_id = "{secret_name(destination_id)}", '
            f'region = "{REGION}", endpoint_url = "{self.url}" }}'
        )
        return ["[destinations.verification_token]", f'handover = "{HANDOVER}"', f"sink = {sink}"]

    def close(self) -> None:
        """Stop the store."""
        if self._server is not None:
            self._server.stop()
            self._server = None


def secret_name(destination_id: str) -> str:
    """The store's secret for one destination's token."""
    return f"demo/{destination_id}/verification-token"
