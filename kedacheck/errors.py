"""The one error the KEDA check raises: its message says what failed and what to do."""

from __future__ import annotations


class KedaCheckError(Exception):
    """The check could not run, or KEDA and the model disagree."""
