"""The root of the service's error tree, and the errors a configuration can raise.

They live here, below everything else, so that Settings and the registry file can raise
them without importing the service; :mod:`worker.errors` re-exports them and draws the
whole tree.
"""

from __future__ import annotations

__all__ = ["ConfigError", "RotatorError", "UsageError"]


class RotatorError(Exception):
    """Base of every error this service raises on purpose."""

    #: Exit code the CLI uses when this error reaches it.
    exit_code = 1


class UsageError(RotatorError):
    """Bad input from a person: CLI arguments, settings, registry file."""

    exit_code = 2


class ConfigError(UsageError):
    """Settings or a configuration file are invalid; ``problems`` lists each reason."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))
