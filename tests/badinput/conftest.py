"""The bad-input rotations reuse the integration rig (real Redis, worker, sandbox over HTTP)."""

from tests.integration.conftest import rig, stack

__all__ = ["rig", "stack"]
