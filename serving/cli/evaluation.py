"""``enclave eval``: retrieval and answer quality on labelled data."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from serving.cli.context import Invocation

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

EvalMode = Annotated[str, typer.Option("--mode", help="dense, sparse, hybrid or all.")]
ReportFile = Annotated[
    Path | None, typer.Option("--report", help="Also write the Markdown report to this file.")
]


def _write_report(path: Path | None, markdown: str) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown, encoding="utf-8")


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


def register(app: typer.Typer, inv: Invocation) -> None:
    """Add this module's commands to the root app."""
    eval_app = typer.Typer(help="Measure retrieval and answer quality on labelled data.")

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
        from serving.cli.ingest import RichProgress
        from serving.evaluation import (
            evaluate_retrieval,
            load_beir,
            modes_for,
            retrieval_markdown,
            write_eval_record,
        )

        modes = modes_for(mode)
        settings = inv.settings()
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
        from serving.cli.ingest import RichProgress
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
        settings = inv.settings()
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

    app.add_typer(eval_app, name="eval")
