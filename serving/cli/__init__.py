"""The ``enclave`` command line (see ``app.py``)."""

from serving.cli.app import build_app, main

__all__ = ["build_app", "main"]
