"""``enclave status``, ``search`` and ``migrate``: the store as an admin sees it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from core.errors import InputError
from core.settings import Settings
from serving.cli.context import Invocation

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def _read_queries(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"queries file {path} does not exist") from None
    except UnicodeDecodeError:
        raise InputError(f"queries file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise InputError(f"cannot read queries file {path}: {exc.strerror or exc}") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise InputError(f"queries file {path} has no queries (one per line)")
    return texts


def _store_address(settings: Settings) -> str:
    if settings.store.url:
        return f"the Qdrant server {settings.store.url}"
    return f"{settings.store.engine} at {settings.store_path.resolve()}"


_TARGET_SETTING = {
    "edge": "ENCLAVE_STORE__ENGINE=edge (and unset ENCLAVE_STORE__URL)",
    "local": "ENCLAVE_STORE__ENGINE=local (and unset ENCLAVE_STORE__URL)",
    "server": "ENCLAVE_STORE__URL={url}",
}


def register(app: typer.Typer, inv: Invocation) -> None:
    """Add this module's commands to the root app."""

    @app.command()
    def status(
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Show the store, collection, counts and models."""
        settings = inv.settings()
        container = inv.container(settings)
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
            "indexed_vectors": info.indexed_vectors,
            "data_dir": str(settings.data_dir.resolve()),
        }
        if as_json:
            typer.echo(json.dumps(data))
            return
        for key, value in data.items():
            typer.echo(f"{key:20} {value if value is not None else '-'}")

    @app.command()
    def search(
        query: Annotated[str | None, typer.Argument(help="What to look for.")] = None,
        queries: Annotated[
            Path | None,
            typer.Option(
                "--queries", help="Run every line of this file as a query (model loaded once)."
            ),
        ] = None,
        top_k: Annotated[
            int | None, typer.Option("--top-k", help="Number of hits (default 5).")
        ] = None,
        mode: Annotated[
            str | None,
            typer.Option(help="dense, sparse or hybrid (default: ENCLAVE_RETRIEVAL__MODE)."),
        ] = None,
        groups: Annotated[
            str | None,
            typer.Option(
                help="Search as a member of these groups (comma-separated); default: all."
            ),
        ] = None,
        filters: Annotated[
            list[str] | None,
            typer.Option(
                "--filter",
                help="key=value, repeatable: source, tag, mime_type, doc_id, modified_after, "
                "modified_before.",
            ),
        ] = None,
        neighbours: Annotated[
            int | None, typer.Option(help="Attach this many adjacent chunks each side of a hit.")
        ] = None,
        as_json: Annotated[
            bool,
            typer.Option(
                "--json", help="JSON: an array of hits (with --queries: of {query, hits})."
            ),
        ] = False,
    ) -> None:
        """Search the knowledge base (no LLM): the best passages for QUERY."""
        from retrieval.filters import parse_filter_args
        from serving.answers import LOCAL_ADMIN, build_retriever
        from serving.answers.views import HitOut
        from serving.cli.ingest import split_groups

        if queries is not None and query is None:
            texts = _read_queries(queries)
        elif query is not None and queries is None:
            texts = [query]
        else:
            raise InputError("give a QUERY or --queries FILE (one of them)")
        fields = parse_filter_args(filters or [])
        group_list = split_groups(groups)
        container = inv.container()
        try:
            retriever = build_retriever(container)
            results: list[dict[str, Any]] = []
            for text in texts:
                hits = retriever.search(
                    text,
                    LOCAL_ADMIN,
                    top_k=top_k,
                    mode=mode,
                    filters=fields,
                    groups=group_list,
                    neighbours=neighbours,
                )
                results.append(
                    {"query": text, "hits": [HitOut.from_domain(h).model_dump() for h in hits]}
                )
        finally:
            container.close()
        if as_json:
            payload: object = results if queries is not None else results[0]["hits"]
            typer.echo(json.dumps(payload, ensure_ascii=False))
            return
        console = Console()
        for result in results:
            if queries is not None:
                console.print(f"\n[bold cyan]Q:[/] {result['query']}", highlight=False)
            if not result["hits"]:
                console.print("    no passage is relevant enough (or visible to these groups)")
            for i, row in enumerate(result["hits"], 1):
                where = f", p. {row['page']}" if row["page"] else ""
                console.print(
                    f"[bold][{i}] {row['title']}{where}[/] ({row['score']:.3f}) {row['source']}",
                    highlight=False,
                )
                console.print(f"    {str(row['text'])[:300]}", highlight=False)

    @app.command()
    def migrate(
        to: Annotated[str, typer.Option("--to", help="Target engine: edge, local or server.")],
        url: Annotated[
            str | None, typer.Option(help="Qdrant server URL (with --to server).")
        ] = None,
        path: Annotated[
            Path | None,
            typer.Option(help="Folder of the target embedded store (default: by engine)."),
        ] = None,
        replace: Annotated[
            bool, typer.Option("--replace", help="Drop what the target collection holds first.")
        ] = False,
    ) -> None:
        """Move the knowledge base to another vector engine, vectors included (no re-parsing,
        no re-embedding). The configured store is the source; it is left as it is."""
        from backends.container import build_store
        from backends.migration import migrate as copy_store
        from backends.sparse import Bm25Encoder
        from backends.sql.registry import Registry

        settings = inv.settings()
        if to not in _TARGET_SETTING:
            raise InputError(f"--to {to!r}: choose edge, local or server")
        if (to == "server") != (url is not None):
            raise InputError("--url goes with --to server (the Qdrant server to copy to), and only")
        store = settings.store.model_copy(
            update={
                "url": url,
                "engine": to if to != "server" else settings.store.engine,
                "path": path,
            }
        )
        target_settings = settings.model_copy(update={"store": store})
        source_address = _store_address(settings)
        if source_address == _store_address(target_settings):
            raise InputError(
                f"the configured store is already {source_address}: nothing to migrate"
            )
        registry = Registry(settings.database_url)
        try:
            collection = registry.active_collection(settings.store.collection)
        finally:
            registry.close()
        source = build_store(settings, collection)
        try:
            target = build_store(target_settings, collection)
            try:
                console = Console(stderr=True)
                with console.status("copying chunks") as status:
                    report = copy_store(
                        source,
                        target,
                        Bm25Encoder(settings.sparse).name,
                        replace=replace,
                        progress=lambda done, total: status.update(f"copied {done:,} of {total:,}"),
                    )
                after = target.info()
            finally:
                target.close()
            before = source.info()
        finally:
            source.close()
        typer.echo(
            f"Copied {report.points:,} chunks of collection '{after.collection}' from "
            f"{before.engine} ({before.location}) to {after.engine} ({after.location}) in "
            f"{report.seconds:.1f} s (index build {report.index_seconds:.1f} s).\n"
            f"To use it, set {_TARGET_SETTING[to].format(url=url)}. The source is unchanged; "
            "delete it when you no longer need it."
        )
