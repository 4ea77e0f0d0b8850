"""The chat page: streamed answers, citation chips that open the passage, conversations,
feedback."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

import streamlit as st

from ui.client import ApiCallError, EnclaveClient
from ui.safe import answer_html, plain

AUTO = "Automatic"
NOT_FOUND = (
    "**Not found in your documents.** Nothing you have access to covers this question. "
    "Try other words, or ask your administrator whether the right documents are ingested."
)
_PASSAGE_CSS = (
    "border-left:3px solid #c9a227;padding:.6em 1em;background:#faf7ee;"
    "border-radius:4px;white-space:pre-wrap;font-size:.92em;line-height:1.45"
)


def page(api: EnclaveClient) -> None:
    state = st.session_state
    state.setdefault("turns", [])
    state.setdefault("conversation_id", None)
    model = _sidebar(api)
    st.header("Ask your documents")
    if not state.turns:
        st.caption(
            "Answers come only from documents your key may read, with numbered citations "
            "you can open. Follow-up questions keep the conversation."
        )
    for turn in state.turns:
        _show_turn(api, turn)
    question = st.chat_input("Ask a question about your documents")
    if not question:
        return
    with st.chat_message("user"):
        st.html(answer_html(question))
    with st.chat_message("assistant"):
        turn = _stream_answer(api, question, model)
    if turn is not None:
        state.turns.append(turn)
        st.rerun()


# -- the sidebar: conversations and model ------------------------------------------------
def _sidebar(api: EnclaveClient) -> str | None:
    state = st.session_state
    with st.sidebar:
        if st.button("New conversation", icon=":material/add:", width="stretch"):
            _open_conversation(None, [])
        st.caption("Conversations")
        for conv in api.conversations():
            current = conv["conversation_id"] == state.conversation_id
            if st.button(
                plain(conv["title"]),
                key=f"conv-{conv['conversation_id']}",
                type="primary" if current else "secondary",
                width="stretch",
            ):
                _open_conversation(
                    conv["conversation_id"], api.conversation(conv["conversation_id"])
                )
                st.rerun()
        if state.conversation_id and st.button(
            "Delete this conversation", icon=":material/delete:", width="stretch"
        ):
            api.delete_conversation(state.conversation_id)
            _open_conversation(None, [])
            st.rerun()
        models = [m for m in api.models() if m != "enclave"]
        if len(models) > 1:
            choice = st.selectbox(
                "Model", [AUTO, *models], key="model", help="Automatic: chosen per question."
            )
            return None if choice == AUTO else choice
    return None


def _open_conversation(conversation_id: str | None, turns: list[dict[str, Any]]) -> None:
    st.session_state.conversation_id = conversation_id
    st.session_state.turns = [
        {
            "question": t["question"],
            "answer": t["answer"],
            "answer_id": t.get("answer_id") or "",
            "citations": t.get("citations") or [],
            "passages": [],
            "abstained": False,
        }
        for t in turns
    ]


# -- asking ------------------------------------------------------------------------------
def _stream_answer(api: EnclaveClient, question: str, model: str | None) -> dict[str, Any] | None:
    """Stream the answer into the page; the finished turn, or None after showing an error."""
    done: dict[str, Any] = {}

    def tokens() -> Iterator[str]:
        for event in api.ask_stream(question, st.session_state.conversation_id, model):
            if event.event == "token":
                yield event.data["text"]
            elif event.event == "done":
                done.update(event.data)

    try:
        with st.spinner("Searching your documents…"):
            stream = tokens()
            first = next(stream, "")
        shown = st.empty()
        written = ""
        for piece in _chain(first, stream):  # rendered safely as it streams in
            written += piece
            shown.html(answer_html(written))
    except ApiCallError as problem:
        if problem.signed_out:
            raise
        st.error(problem.friendly)
        return None
    if not done:
        st.error("The answer stopped before it was complete. Ask again.")
        return None
    st.session_state.conversation_id = done["conversation_id"]
    return {
        "question": question,
        "answer": done["answer"],
        "answer_id": done["answer_id"],
        "citations": done["citations"],
        "claims": done.get("claims") or [],
        "passages": done["passages"],
        "abstained": done["abstained"],
    }


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest


# -- one turn: answer, citation chips, passages, feedback -----------------------------------
def _show_turn(api: EnclaveClient, turn: dict[str, Any]) -> None:
    with st.chat_message("user"):
        st.html(answer_html(turn["question"]))
    with st.chat_message("assistant"):
        if turn["abstained"]:
            st.info(NOT_FOUND, icon=":material/search_off:")
        else:
            st.html(answer_html(turn["answer"]))
            _show_support(turn.get("claims") or [])
        citations = {c["n"]: c for c in turn["citations"]}
        answer_id = turn["answer_id"]
        if citations:
            chosen = st.pills(
                "Sources",
                list(citations),
                format_func=lambda n: _chip(citations[n]),
                key=f"cite-{answer_id}",
            )
            if chosen is not None:
                _show_citation(api, citations[chosen], answer_id)
        if turn["passages"]:
            with st.expander(f"Retrieved passages ({len(turn['passages'])})"):
                for p in turn["passages"]:
                    st.markdown(
                        f"**\\[{p['n']}\\] {plain(_label(p))}** · relevance {_relevance(p)}"
                    )
                    st.text(p["text"])
        if answer_id:
            _feedback(api, answer_id)


def _show_support(claims: list[dict[str, Any]]) -> None:
    """How many of the answer's sentences the system found in the passages, and which
    it did not (those are the model's own words: check them)."""
    if not claims:
        return
    unsupported = [c["text"] for c in claims if not c["supported"]]
    if not unsupported:
        st.caption(f"Every sentence ({len(claims)}) was found in the passages.")
        return
    st.caption(
        f"{len(claims) - len(unsupported)} of {len(claims)} sentences were found in the "
        "passages. Not found, so check them: "
        + " · ".join(f"“{plain(text)}”" for text in unsupported)
    )


def _chip(citation: dict[str, Any]) -> str:
    return plain(f"[{citation['n']}] {_label(citation)}")


def _label(item: dict[str, Any]) -> str:
    title = item.get("title") or PurePath(item.get("source") or "").name or "document"
    return f"{title}, p. {item['page']}" if item.get("page") else str(title)


def _relevance(passage: dict[str, Any]) -> str:
    value = passage.get("relevance")
    return "-" if value is None else f"{value:.2f}"


def _show_citation(api: EnclaveClient, citation: dict[str, Any], answer_id: str) -> None:
    """The cited passage (its chunk, the quote highlighted) and the source to open."""
    try:
        source = _source(api, citation["doc_id"])
    except ApiCallError as problem:
        st.warning(problem.friendly)
        return
    chunk = _cited_chunk(source["chunks"], citation)
    name = PurePath(source["source"]).name
    with st.container(border=True):
        st.markdown(
            f"**{plain(source['title'] or name)}**"
            + (f" · page {citation['page']}" if citation.get("page") else "")
            + f" · {plain(name)}"
        )
        st.html(
            f'<div class="enclave-passage" style="{_PASSAGE_CSS}">{_highlight(chunk, citation["quote"])}</div>'
        )
        left, right = st.columns(2)
        with left:
            files: dict[str, tuple[bytes, str, str]] = st.session_state.setdefault("files", {})
            if citation["doc_id"] in files:
                content, filename, mime = files[citation["doc_id"]]
                st.download_button(
                    f"Download {filename}",
                    content,
                    file_name=filename,
                    mime=mime or None,
                    icon=":material/download:",
                    key=f"dl-{answer_id}-{citation['n']}",
                )
            elif st.button(
                "Open the source document",
                icon=":material/description:",
                key=f"open-{answer_id}-{citation['n']}",
            ):
                files[citation["doc_id"]] = api.source_file(citation["doc_id"])
                st.rerun()
        with right, st.expander("The whole document's text"):
            for c in source["chunks"]:
                if c.get("page"):
                    st.caption(f"page {c['page']}")
                st.text(c["text"])


def _source(api: EnclaveClient, doc_id: str) -> dict[str, Any]:
    sources: dict[str, dict[str, Any]] = st.session_state.setdefault("sources", {})
    if doc_id not in sources:
        sources[doc_id] = api.source(doc_id)
    return sources[doc_id]


def _cited_chunk(chunks: list[dict[str, Any]], citation: dict[str, Any]) -> str:
    """The text of the chunk holding the quote (else the first on the cited page)."""
    quote = _squash(citation.get("quote") or "")
    for c in chunks:
        if quote and quote in _squash(c["text"]):
            return str(c["text"])
    on_page = [c for c in chunks if c.get("page") == citation.get("page")]
    return str((on_page or chunks or [{"text": citation.get("quote") or ""}])[0]["text"])


def _highlight(text: str, quote: str) -> str:
    """HTML of ``text`` with ``quote`` marked (whitespace-insensitive), everything escaped."""
    words = quote.split()
    if words:
        pattern = r"\s+".join(re.escape(w) for w in words)
        match = re.search(pattern, text)
        if match:
            return (
                html.escape(text[: match.start()])
                + f"<mark>{html.escape(match.group(0))}</mark>"
                + html.escape(text[match.end() :])
            )
    return html.escape(text)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _feedback(api: EnclaveClient, answer_id: str) -> None:
    sent: dict[str, tuple[int, str]] = st.session_state.setdefault("feedback_sent", {})
    rating = st.feedback("thumbs", key=f"fb-{answer_id}")
    if rating is None:
        return
    comment = st.text_input(
        "Tell us more (optional)", key=f"fbc-{answer_id}", placeholder="What was wrong or right?"
    )
    if sent.get(answer_id) != (rating, comment):
        api.feedback(answer_id, "up" if rating == 1 else "down", comment)
        sent[answer_id] = (rating, comment)
        st.toast("Thanks for your feedback.", icon=":material/thumb_up:")
    st.caption("Feedback recorded." + (" Comment saved." if comment else ""))
