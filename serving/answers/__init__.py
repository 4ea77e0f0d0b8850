"""The RAG path: rewrite a follow-up, route to a model, retrieve under the caller's access
scope, pack the context, prompt, stream, cite; and the audited answer session every
channel (API, OpenAI-compatible endpoint, ``enclave ask``) goes through.

    router.py      which model answers (requested, or by the question's complexity)
    prompt.py      instructions, numbered blocks packed into the window
    citations.py   [n] markers checked against the blocks, verbatim quotes
    answerer.py    the answer as a stream of events (Retrieved, Token..., Completed)
    session.py     one audited answer: audit row, conversation turn, in-progress limit
    retrieval.py   the Retriever on a container, and the command line's principal
"""

from serving.answers.answerer import Answerer, AnswerEvent, Completed, Retrieved, Token, complete
from serving.answers.citations import CITATION_MARKER, best_quote, extract_citations
from serving.answers.prompt import NOT_COVERED, build_messages, pack
from serving.answers.retrieval import LOCAL_ADMIN, build_retriever, local_answerer
from serving.answers.router import Router, is_complex

__all__ = [
    "CITATION_MARKER",
    "LOCAL_ADMIN",
    "NOT_COVERED",
    "AnswerEvent",
    "Answerer",
    "Completed",
    "Retrieved",
    "Router",
    "Token",
    "best_quote",
    "build_messages",
    "build_retriever",
    "complete",
    "extract_citations",
    "is_complex",
    "local_answerer",
    "pack",
]
