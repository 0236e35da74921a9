"""Exception hierarchy of fewshot.

Every error a user can cause is a :class:`FewShotError`; the CLI turns it into one
line on stderr and a non-zero exit, never a traceback. Messages name the input,
the rule and the value, e.g. ``"n must be a positive int or 'all'; got 0"``.
"""

from __future__ import annotations

__all__ = ["FewShotError", "ParameterError", "DataError", "ConfigMismatchError"]


class FewShotError(Exception):
    """Root of every error that a user of fewshot can cause and fix."""


class ParameterError(FewShotError, ValueError):
    """A parameter (CLI option, function argument, TOML key) has a bad value."""


class DataError(FewShotError):
    """Audio, metadata or a dataset folder is missing, unreadable or inconsistent."""


class ConfigMismatchError(FewShotError):
    """A run folder already holds results of a different, incompatible configuration."""
