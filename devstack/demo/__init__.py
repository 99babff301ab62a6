"""``rotator demo``: the whole product on this machine, with a live view of its rotations."""

from devstack.demo.runner import Demo, DemoOptions

__all__ = ["Demo", "DemoOptions"]
