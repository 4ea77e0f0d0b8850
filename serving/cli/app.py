"""The ``enclave`` command: the root Typer app, its command groups registered explicitly.

Every command prints one line to stderr and exits non-zero on a known error
(``EnclaveError``): 2 when the command could not run; ``enclave ingest`` uses 1
for "finished, but some files failed". Nothing prints a stack trace unless
``ENCLAVE_LOG__LEVEL=DEBUG``.

    ingest.py      ingest, job, docs          access.py    access rules
    store.py       status, search, migrate    evaluation.py  eval retrieval|answers
    keys.py        keys, audit                ops.py       reindex, backup, restore
    db.py          db upgrade|current         worker.py    worker
    run.py         demo, serve, ask, ui, up   (ask.py, launcher.py: their helpers)
"""

from __future__ import annotations

import logging
import sys

import typer

from core.errors import EnclaveError
from core.logging import configure_logging
from core.runtime import prepare_process
from serving.cli import access, db, evaluation, ingest, keys, ops, run, store, worker
from serving.cli.context import Invocation

logger = logging.getLogger(__name__)

EXIT_ERROR = 2
EXIT_INTERNAL = 3
GROUPS = (ingest, access, store, evaluation, keys, ops, db, worker, run)


def build_app(inv: Invocation | None = None) -> typer.Typer:
    """The root app with every command group, sharing one :class:`Invocation`."""
    inv = inv or Invocation()
    app = typer.Typer(
        name="enclave",
        help="Enclave: ask your organisation's documents, on your own hardware.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _configure() -> None:
        prepare_process()
        settings = inv.settings()
        configure_logging(settings.log.level, settings.log.json_format)

    for group in GROUPS:
        group.register(app, inv)
    return app


def main() -> None:
    """Entry point of the ``enclave`` console script."""
    try:
        build_app()()
    except EnclaveError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    except Exception as exc:  # last resort: one line, never a traceback
        logger.debug("internal error", exc_info=True)
        typer.echo(
            f"internal error: {exc.__class__.__name__}: {exc} "
            "(run with ENCLAVE_LOG__LEVEL=DEBUG for details)",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
