"""``enclave demo``, ``serve``, ``ask``, ``ui`` and ``up``: running Enclave."""

from __future__ import annotations

import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from core.errors import InputError
from serving.cli.context import Invocation

if TYPE_CHECKING:
    from backends.container import Container

logger = logging.getLogger(__name__)

SAMPLE_QUESTIONS = (
    "How many days of annual leave do employees get?",
    "How quickly must I report a phishing email, and to whom?",
)
SAMPLE_GROUP = "everyone"


def _ingest_sample(container: Container, console: Console) -> Path:
    """Ingest the bundled sample knowledge base (tag ``sample``; incremental) and return
    its folder. It ships with its access rule (readable by group ``everyone``), recorded
    the first time; a rule an admin set on it since is kept."""
    from ingest.access import RuleSet, rule_prefix
    from serving.cli.ingest import run_ingest

    kb = Path(str(resources.files("serving") / "sample_kb"))
    console.print(f"[bold]1. Ingesting the sample knowledge base[/] {kb}")
    ruled = RuleSet(container.registry.rules()).rule_for(rule_prefix(kb)) is not None
    groups = None if ruled else SAMPLE_GROUP
    run_ingest(container, [str(kb)], groups, ["sample"], dry_run=False, as_json=False)
    return kb


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


def register(app: typer.Typer, inv: Invocation) -> None:
    """Add this module's commands to the root app."""

    @app.command()
    def demo(
        question: Annotated[
            list[str] | None, typer.Option("--question", "-q", help="Ask this instead.")
        ] = None,
    ) -> None:
        """Ingest the bundled sample knowledge base and answer sample questions from it."""
        from backends.sql.app import AppDatabase
        from serving.answers import local_answerer
        from serving.cli.ask import print_answer

        console = Console()
        container = inv.container()
        db = AppDatabase(container.database)
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
                print_answer(answerer, db, q)
        finally:
            db.close()
            container.close()
        console.print(
            '\nNext: `enclave ingest YOUR_FOLDER --groups staff`, then `enclave ask "..."`, '
            "or `enclave serve` for the API."
        )

    @app.command()
    def serve(
        host: Annotated[
            str | None, typer.Option(help="Listen address (ENCLAVE_API__HOST).")
        ] = None,
        port: Annotated[int | None, typer.Option(help="Port (ENCLAVE_API__PORT).")] = None,
    ) -> None:
        """Run the HTTP API (the UI and other services talk to it)."""
        import uvicorn

        from backends.container import build_container
        from serving.api import create_app
        from serving.api.services import build_services

        settings = inv.settings()
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
            str | None,
            typer.Option(help="Answer from these groups' documents only (comma-separated)."),
        ] = None,
        model: Annotated[
            str | None, typer.Option(help="A configured model (default: routed).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Answer QUESTION from the documents, streaming, with citations underneath.

        With ENCLAVE_API_URL and ENCLAVE_API_KEY set, asks the running server; otherwise
        opens the store and the LLM itself."""
        from serving.cli.ask import ask_local, ask_remote

        api_url = os.environ.get("ENCLAVE_API_URL")
        if api_url:
            api_key = os.environ.get("ENCLAVE_API_KEY", "")
            if not api_key:
                raise InputError("ENCLAVE_API_URL is set but ENCLAVE_API_KEY is not; set both")
            ask_remote(api_url, api_key, question, model=model, as_json=as_json)
            return
        from serving.cli.ingest import split_groups

        ask_local(inv.container(), question, split_groups(groups), model=model, as_json=as_json)

    @app.command()
    def ui(
        host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port.")] = UI_PORT,
    ) -> None:
        """Run the web UI. It talks to the API at ENCLAVE_API_URL (default: this machine's
        `enclave serve` address)."""
        settings = inv.settings()
        env = {**os.environ}
        env.setdefault("ENCLAVE_API_URL", f"http://{settings.api.host}:{settings.api.port}")
        command, cwd = _ui_command(host, port)
        typer.echo(f"Enclave UI on http://{host}:{port} (API: {env['ENCLAVE_API_URL']})")
        if cwd is not None:
            os.chdir(cwd)
        os.execvpe(command[0], command, env)  # noqa: S606 - becomes the streamlit server

    @app.command()
    def up(
        host: Annotated[
            str, typer.Option(help="Listen address of the API and the UI.")
        ] = "127.0.0.1",
        api_port: Annotated[int | None, typer.Option(help="API port (ENCLAVE_API__PORT).")] = None,
        ui_port: Annotated[int, typer.Option(help="UI port.")] = UI_PORT,
    ) -> None:
        """Ingest the sample knowledge base, then run the API and the web UI together, signed
        in with a fresh admin key (Ctrl-C stops both)."""
        from serving.cli.launcher import run_stack

        settings = inv.settings()
        console = Console()
        container = inv.container(settings)
        try:
            kb = _ingest_sample(container, console)
        finally:
            container.close()
        run_stack(settings, console, kb, host, api_port or settings.api.port, ui_port)
