"""The CLI's user-facing error, raised by every command module."""

from __future__ import annotations


# In a module of its own: ``python -m services.cli`` runs cli.py as ``__main__``, so a class
# defined there would differ from the one other modules import from ``services.cli``.
class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit status 1."""
