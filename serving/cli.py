"""The ``enclave`` command.

Every command prints one line to stderr and exits non-zero on a known error
(``EnclaveError``): 2 when the command could not run; ``enclave ingest`` uses 1
for "finished, but some files failed". Nothing prints a stack trace unless
``ENCLAVE_LOG__LEVEL=DEBUG``.
"""

from __future__ import annotations

import json
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from core.errors import ConfigError, EnclaveError
from core.logging import configure_logging
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from backends.container import Container

logger = logging.getLogger(__name__)

EXIT_ERROR = 2
EXIT_INTERNAL = 3
SAMPLE_QUESTIONS = (
    "How many days of annual leave do employees get?",
    "How quickly must I report a phishing email, and to whom?",
)

app = typer.Typer(
    name="enclave",
    help="Enclave: ask your organisation's documents, on your own hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"ENCLAVE_{'__'.join(str(p).upper() for p in e['loc'])}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


def _container(settings: Settings | None = None) -> Container:
    from backends.container import build_container

    return build_container(settings or _settings())


@app.callback()
def _configure() -> None:
    settings = _settings()
    configure_logging(settings.log.level, settings.log.json_format)


def _register_ingest() -> None:
    from ingest.cli import register

    register(app, _container)


_register_ingest()


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show the store, collection, counts and models."""
    settings = _settings()
    container = _container(settings)
    try:
        info = container.store.info()
        documents = len(container.registry.all())
    finally:
        container.close()
    data = {
        "engine": info.engine,
        "location": info.location,
        "collection": info.collection,
        "documents": documents,
        "chunks": info.points,
        "embedder": settings.embedder.model,
        "collection_embedder": info.embedder,
        "dense_dim": info.dense_dim,
        "data_dir": str(settings.data_dir.resolve()),
    }
    if as_json:
        typer.echo(json.dumps(data))
        return
    for key, value in data.items():
        typer.echo(f"{key:20} {value if value is not None else '-'}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    top_k: Annotated[int, typer.Option("--top-k", help="Number of hits.")] = 5,
    mode: Annotated[str, typer.Option(help="dense, sparse or hybrid.")] = "hybrid",
    groups: Annotated[
        str | None,
        typer.Option(help="Search as a user of these groups (comma-separated); default: all."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of hits.")] = False,
) -> None:
    """Search the knowledge base (no LLM): the best passages for QUERY."""
    from ingest.cli import split_groups
    from retrieval.search import Retriever

    group_list = split_groups(groups)
    container = _container()
    try:
        hits = Retriever(container).search(query, groups=group_list, top_k=top_k, mode=mode)
    finally:
        container.close()
    rows = [
        {
            "doc_id": h.chunk.doc_id,
            "source": h.chunk.source,
            "title": h.chunk.title,
            "page": h.chunk.page,
            "heading_path": list(h.chunk.heading_path),
            "score": round(h.score, 6),
            "text": h.chunk.text,
        }
        for h in hits
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    console = Console()
    for i, row in enumerate(rows, 1):
        where = f", p. {row['page']}" if row["page"] else ""
        console.print(f"[bold][{i}] {row['title']}{where}[/] ({row['score']:.3f}) {row['source']}")
        console.print(f"    {str(row['text'])[:300]}", highlight=False)


@app.command()
def demo(
    question: Annotated[
        list[str] | None, typer.Option("--question", "-q", help="Ask this instead.")
    ] = None,
) -> None:
    """Ingest the bundled sample knowledge base and answer sample questions from it."""
    from ingest.cli import run_ingest
    from retrieval.search import Retriever

    kb = Path(str(resources.files("serving") / "sample_kb"))
    console = Console()
    console.print(f"[bold]1. Ingesting the sample knowledge base[/] {kb}")
    container = _container()
    try:
        run_ingest(container, [str(kb)], None, ["sample"], dry_run=False, as_json=False)
        retriever = Retriever(container)
        console.print("\n[bold]2. Asking it[/] (extractive: the best passage, with its citation)")
        for q in question or SAMPLE_QUESTIONS:
            hits = retriever.search(q, groups=None, top_k=3)
            console.print(f"\n[bold cyan]Q:[/] {q}")
            if not hits:
                console.print("   Not found in the documents.")
                continue
            best = hits[0].chunk
            where = f", page {best.page}" if best.page else ""
            console.print(f"[bold green]A:[/] {best.text.strip()} [1]", highlight=False)
            console.print(f"   [1] {best.title}{where} — {Path(best.source).name}")
    finally:
        container.close()
    console.print(
        '\nNext: `enclave ingest YOUR_FOLDER --groups staff`, then `enclave search "..."`.'
    )


def main() -> None:
    """Entry point of the ``enclave`` console script."""
    try:
        app()
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


if __name__ == "__main__":
    main()
