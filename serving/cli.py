"""The ``enclave`` command.

Every command prints one line to stderr and exits non-zero on a known error
(``EnclaveError``): 2 when the command could not run; ``enclave ingest`` uses 1
for "finished, but some files failed". Nothing prints a stack trace unless
``ENCLAVE_LOG__LEVEL=DEBUG``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from core.errors import ConfigError, EnclaveError, InputError
from core.logging import configure_logging
from core.runtime import prepare_process
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
    prepare_process()
    settings = _settings()
    configure_logging(settings.log.level, settings.log.json_format)


def _register_ingest() -> None:
    from ingest.cli import register
    from serving.worker import register as register_worker

    register(app, _container, _settings)
    register_worker(app, _settings)


_register_ingest()


def _register_admin() -> None:
    from serving.admin_cli import register

    register(app, _settings)


_register_admin()


def _register_ops() -> None:
    from serving.ops_cli import register

    register(app, _settings)


_register_ops()


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
        str | None, typer.Option(help="dense, sparse or hybrid (default: ENCLAVE_RETRIEVAL__MODE).")
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option(help="Search as a member of these groups (comma-separated); default: all."),
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
        typer.Option("--json", help="JSON: an array of hits (with --queries: of {query, hits})."),
    ] = False,
) -> None:
    """Search the knowledge base (no LLM): the best passages for QUERY."""
    from ingest.cli import split_groups
    from retrieval.filters import parse_filter_args
    from serving.retriever import LOCAL_ADMIN, build_retriever, hit_json

    if queries is not None and query is None:
        texts = _read_queries(queries)
    elif query is not None and queries is None:
        texts = [query]
    else:
        raise InputError("give a QUERY or --queries FILE (one of them)")
    fields = parse_filter_args(filters or [])
    group_list = split_groups(groups)
    container = _container()
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
            results.append({"query": text, "hits": [hit_json(h) for h in hits]})
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


eval_app = typer.Typer(help="Measure retrieval and answer quality on labelled data.")
app.add_typer(eval_app, name="eval")
EvalMode = Annotated[str, typer.Option("--mode", help="dense, sparse, hybrid or all.")]
ReportFile = Annotated[
    Path | None, typer.Option("--report", help="Also write the Markdown report to this file.")
]


def _write_report(path: Path | None, markdown: str) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown, encoding="utf-8")


@eval_app.command("retrieval")
def eval_retrieval(
    data_dir: Annotated[
        Path, typer.Argument(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv.")
    ],
    mode: EvalMode = "all",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (keyed by mode with all).")
    ] = False,
    report: ReportFile = None,
) -> None:
    """nDCG@10, Recall@10/100, MRR@10 and latency per mode on a BEIR dataset."""
    from ingest.cli import RichProgress
    from serving.evaluation import (
        evaluate_retrieval,
        load_beir,
        modes_for,
        retrieval_markdown,
        write_eval_record,
    )

    modes = modes_for(mode)
    settings = _settings()
    data = load_beir(data_dir)
    console = Console(stderr=True)
    total = len(data.queries) * len(modes)
    with RichProgress(console) as progress, _QueryProgress(console, total) as tick:
        result = evaluate_retrieval(settings, data, modes, progress, tick)
    rows = {m: r.as_dict() for m, r in result.results.items()}
    write_eval_record(settings.data_dir, "retrieval", result.dataset, rows)
    markdown = retrieval_markdown(result)
    _write_report(report, markdown)
    if as_json:
        typer.echo(json.dumps(rows if mode == "all" else rows[mode]))
        return
    console.print(
        f"indexed {result.documents:,} documents as {result.chunks:,} chunks "
        f"({result.embedded_chunks:,} embedded this run, {result.index_seconds:.0f} s)"
    )
    typer.echo(markdown)


@eval_app.command("answers")
def eval_answers(
    data: Annotated[Path, typer.Argument(help="COVID-QA (SQuAD-format) JSON file.")],
    mode: EvalMode = "all",
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    generate: Annotated[
        int,
        typer.Option(
            help="Also have the LLM answer the first N questions (hybrid search, or the one "
            "--mode names) and score the answers: EM, F1, citations, latency. 0: off."
        ),
    ] = 0,
    abstain: Annotated[
        int,
        typer.Option(
            help="With answer generation, also ask N questions about articles held out of "
            "the index, and measure how often the answer declines."
        ),
    ] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON keyed by mode (and 'generation').")
    ] = False,
    report: ReportFile = None,
) -> None:
    """Answer recall@k per mode: does a retrieved chunk contain the gold answer? With
    --generate, also the quality of generated answers."""
    from ingest.cli import RichProgress
    from serving.evaluation import (
        answers_markdown,
        evaluate_answer_recall,
        evaluate_generation,
        generation_markdown,
        generation_questions,
        limit_questions,
        load_covidqa,
        modes_for,
        write_eval_record,
    )

    modes = modes_for(mode)
    settings = _settings()
    qa = load_covidqa(data)
    asked = generation_questions(qa, generate, abstain)
    console = Console(stderr=True)
    total = len(limit_questions(qa, limit)) * len(modes)
    with RichProgress(console) as progress, _QueryProgress(console, total) as tick:
        result = evaluate_answer_recall(settings, qa, modes, limit, progress, tick)
    rows: dict[str, Any] = {
        m: {k: round(v, 4) for k, v in r.items()} for m, r in result.results.items()
    }
    markdown = answers_markdown(result)
    if asked:
        gen_mode = "hybrid" if mode == "all" else mode
        with RichProgress(console) as progress, _QueryProgress(console, len(asked)) as tick:
            generation = evaluate_generation(
                settings, qa, generate, abstain, gen_mode, progress=progress, on_answer=tick
            )
        rows["generation"] = generation.as_dict()
        markdown += "\n" + generation_markdown(generation)
    write_eval_record(settings.data_dir, "answers", result.dataset, rows)
    _write_report(report, markdown)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    typer.echo(markdown)


class _QueryProgress:
    """A 'queries' counter on stderr while an evaluation runs."""

    def __init__(self, console: Console, total: int) -> None:
        from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]queries"),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task("queries", total=total)

    def __enter__(self) -> Callable[[], None]:
        self._progress.start()
        return lambda: self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


SAMPLE_GROUP = "everyone"


def _ingest_sample(container: Container, console: Console) -> Path:
    """Ingest the bundled sample knowledge base (tag ``sample``; incremental) and return
    its folder. It ships with its access rule (readable by group ``everyone``), recorded
    the first time; a rule an admin set on it since is kept."""
    from ingest.access import RuleSet, rule_prefix
    from ingest.cli import run_ingest

    kb = Path(str(resources.files("serving") / "sample_kb"))
    console.print(f"[bold]1. Ingesting the sample knowledge base[/] {kb}")
    ruled = RuleSet(container.registry.rules()).rule_for(rule_prefix(kb)) is not None
    groups = None if ruled else SAMPLE_GROUP
    run_ingest(container, [str(kb)], groups, ["sample"], dry_run=False, as_json=False)
    return kb


@app.command()
def demo(
    question: Annotated[
        list[str] | None, typer.Option("--question", "-q", help="Ask this instead.")
    ] = None,
) -> None:
    """Ingest the bundled sample knowledge base and answer sample questions from it."""
    from serving.ask_cli import local_answerer, print_answer

    console = Console()
    container = _container()
    try:
        _ingest_sample(container, console)
        console.print(
            "\n[bold]2. Starting the LLM[/] (embedded llama.cpp unless ENCLAVE_LLM__MODELS)"
        )
        answerer = local_answerer(container)
        console.print(f"   model: {', '.join(answerer.router.names)}")
        console.print("\n[bold]3. Asking it[/] (grounded answers with citations)")
        for q in question or SAMPLE_QUESTIONS:
            console.print(f"\n[bold cyan]Q:[/] {q}")
            console.print("[bold green]A:[/] ", end="")
            print_answer(answerer, q)
    finally:
        container.close()
    console.print(
        '\nNext: `enclave ingest YOUR_FOLDER --groups staff`, then `enclave ask "..."`, '
        "or `enclave serve` for the API."
    )


def _store_address(settings: Settings) -> str:
    if settings.store.url:
        return f"the Qdrant server {settings.store.url}"
    return f"{settings.store.engine} at {settings.store_path.resolve()}"


_TARGET_SETTING = {
    "edge": "ENCLAVE_STORE__ENGINE=edge (and unset ENCLAVE_STORE__URL)",
    "local": "ENCLAVE_STORE__ENGINE=local (and unset ENCLAVE_STORE__URL)",
    "server": "ENCLAVE_STORE__URL={url}",
}


@app.command()
def migrate(
    to: Annotated[str, typer.Option("--to", help="Target engine: edge, local or server.")],
    url: Annotated[str | None, typer.Option(help="Qdrant server URL (with --to server).")] = None,
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
    from backends.registry import Registry
    from backends.sparse import Bm25Encoder

    settings = _settings()
    if to not in _TARGET_SETTING:
        raise InputError(f"--to {to!r}: choose edge, local or server")
    if (to == "server") != (url is not None):
        raise InputError("--url goes with --to server (the Qdrant server to copy to), and only")
    store = settings.store.model_copy(
        update={"url": url, "engine": to if to != "server" else settings.store.engine, "path": path}
    )
    target_settings = settings.model_copy(update={"store": store})
    source_address = _store_address(settings)
    if source_address == _store_address(target_settings):
        raise InputError(f"the configured store is already {source_address}: nothing to migrate")
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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (ENCLAVE_API__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (ENCLAVE_API__PORT).")] = None,
) -> None:
    """Run the HTTP API (the UI and other services talk to it)."""
    import uvicorn

    from backends.container import build_container
    from serving.api import build_services, create_app

    settings = _settings()
    container = build_container(settings, wait_for_store=True)  # held elsewhere: 503 until free
    try:
        services = build_services(settings, container)  # models and LLM up before listening
        app_ = create_app(settings, services=services)
        host = host or settings.api.host
        port = port or settings.api.port
        typer.echo(f"Enclave API on http://{host}:{port} (OpenAPI schema at /openapi.json)")
        uvicorn.run(
            app_,
            host=host,
            port=port,
            log_level=settings.log.level.lower(),
            # no access log of uvicorn's: the API logs each request with its request id
            access_log=False,
            # uvicorn's own lines go through Enclave's handler (JSON when deployed)
            log_config=None,
        )
    finally:
        container.close()


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    groups: Annotated[
        str | None, typer.Option(help="Answer from these groups' documents only (comma-separated).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="A configured model (default: routed).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Answer QUESTION from the documents, streaming, with citations underneath.

    With ENCLAVE_API_URL and ENCLAVE_API_KEY set, asks the running server; otherwise
    opens the store and the LLM itself."""
    from serving.ask_cli import ask_local, ask_remote

    api_url = os.environ.get("ENCLAVE_API_URL")
    if api_url:
        api_key = os.environ.get("ENCLAVE_API_KEY", "")
        if not api_key:
            raise InputError("ENCLAVE_API_URL is set but ENCLAVE_API_KEY is not; set both")
        ask_remote(api_url, api_key, question, model=model, as_json=as_json)
        return
    from ingest.cli import split_groups

    ask_local(_container(), question, split_groups(groups), model=model, as_json=as_json)


UI_PORT = 8501


def _ui_command(host: str, port: int) -> tuple[list[str], Path | None]:
    """``streamlit run ui/serve.py`` (the UI app with its security headers) with the
    options that must hold wherever it starts (no usage statistics, no tracebacks, no
    file watching), and the folder holding the project's ``.streamlit/config.toml``
    (theme) when there is one."""
    import ui

    app_file = Path(ui.__file__).with_name("serve.py")
    project = app_file.parent.parent
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_file),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.showErrorDetails",
        "none",
        "--server.fileWatcherType",
        "none",
    ]
    return command, project if (project / ".streamlit" / "config.toml").is_file() else None


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = UI_PORT,
) -> None:
    """Run the web UI. It talks to the API at ENCLAVE_API_URL (default: this machine's
    `enclave serve` address)."""
    settings = _settings()
    env = {**os.environ}
    env.setdefault("ENCLAVE_API_URL", f"http://{settings.api.host}:{settings.api.port}")
    command, cwd = _ui_command(host, port)
    typer.echo(f"Enclave UI on http://{host}:{port} (API: {env['ENCLAVE_API_URL']})")
    if cwd is not None:
        os.chdir(cwd)
    os.execvpe(command[0], command, env)  # noqa: S606 - becomes the streamlit server


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Listen address of the API and the UI.")] = "127.0.0.1",
    api_port: Annotated[int | None, typer.Option(help="API port (ENCLAVE_API__PORT).")] = None,
    ui_port: Annotated[int, typer.Option(help="UI port.")] = UI_PORT,
) -> None:
    """Ingest the sample knowledge base, then run the API and the web UI together, signed
    in with a fresh admin key (Ctrl-C stops both)."""
    from serving.launcher import run_stack

    settings = _settings()
    console = Console()
    container = _container(settings)
    try:
        kb = _ingest_sample(container, console)
    finally:
        container.close()
    run_stack(settings, console, kb, host, api_port or settings.api.port, ui_port)


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
