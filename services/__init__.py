"""certtoken services: api, ca_worker, notifier and the CLI that composes them."""

__version__ = "0.1.0"
