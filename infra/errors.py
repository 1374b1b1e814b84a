"""Every error the infra tooling raises on purpose, each with a message that says what to fix.

InfraError
├── ConfigError          a stack config value (or a change of one) that cannot work
├── ChartRenderError     helm could not render a chart for the hook check
├── CrdFetchError        a CRD set could not be fetched or generated
└── EngineNotBuiltError  the real engine is not in the cache; run `make engine`
"""

from __future__ import annotations


class InfraError(Exception):
    """Root of the infra errors."""


class ConfigError(InfraError):
    """A stack config value that makes no sense; the message names the key and the fix."""


class ChartRenderError(InfraError):
    """helm could not render a chart; the message carries helm's own."""


class CrdFetchError(InfraError):
    """A CRD set could not be fetched or generated; the message says which and why."""


class EngineNotBuiltError(InfraError):
    """The CLI, the provider or helm is missing from the engine cache."""
