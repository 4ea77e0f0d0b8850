"""The admin pages: ingestion jobs, documents, usage and quality figures."""

from __future__ import annotations

import time
from pathlib import PurePath
from typing import Any

import pandas as pd
import streamlit as st

from ui.client import EnclaveClient
from ui.safe import plain

POLL_S = 0.5
FINISHED = ("done", "failed")


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# -- ingestion ----------------------------------------------------------------------------
def ingestion_page(api: EnclaveClient) -> None:
    st.header("Ingestion")
    st.caption(
        "Documents are parsed, chunked, embedded and indexed; unchanged files are skipped, "
        "changed ones replaced. Groups decide who may read them."
    )
    upload_tab, folder_tab = st.tabs(["Upload files", "Server folder"])
    with upload_tab, st.form("upload", clear_on_submit=True):
        files = st.file_uploader("Files", accept_multiple_files=True)
        groups = st.text_input("Groups (comma-separated)", key="upload-groups")
        tags = st.text_input("Tags (comma-separated)", key="upload-tags")
        if st.form_submit_button("Start ingestion", type="primary"):
            if not files:
                st.warning("Choose at least one file to upload.")
            else:
                st.session_state.job = api.upload(
                    [(f.name, f.getvalue()) for f in files], _names(groups), _names(tags)
                )
    with folder_tab, st.form("folder"):
        path = st.text_input(
            "Folder or file on the server",
            help="Must be inside a folder the server allows (ENCLAVE_API__INGEST_ROOTS).",
        )
        groups = st.text_input("Groups (comma-separated)", key="folder-groups")
        tags = st.text_input("Tags (comma-separated)", key="folder-tags")
        if st.form_submit_button("Start ingestion", type="primary"):
            if not path.strip():
                st.warning("Name a folder or file on the server.")
            else:
                st.session_state.job = api.ingest_folder(path.strip(), _names(groups), _names(tags))
    if job_id := st.session_state.get("job"):
        _watch(api, job_id)
    st.subheader("Job history")
    jobs = api.jobs()
    if not jobs:
        st.caption("No ingestion jobs yet.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "started": [j["created_at"] for j in jobs],
                "status": [j["status"] for j in jobs],
                "files": [f"{j['done_files']}/{j['total_files']}" for j in jobs],
                "chunks": [j["chunks"] for j in jobs],
                "failed": [sum(r["status"] == "failed" for r in j["results"]) for j in jobs],
                "job": [j["job_id"] for j in jobs],
            }
        ),
        hide_index=True,
        width="stretch",
    )


def _watch(api: EnclaveClient, job_id: str) -> None:
    """Live progress of a job until it finishes, then its per-file results."""
    st.subheader("Current job")
    bar = st.progress(0.0, text="Queued…")
    job = api.job(job_id)
    while job["status"] not in FINISHED:
        total = max(job["total_files"], 1)
        bar.progress(
            min(job["done_files"] / total, 1.0),
            text=f"{job['status'].capitalize()}: {job['done_files']}/{job['total_files']} files, "
            f"{job['chunks']} chunks",
        )
        time.sleep(POLL_S)
        job = api.job(job_id)
    failed = [r for r in job["results"] if r["status"] == "failed"]
    bar.progress(1.0, text=f"Finished: {_files(job['done_files'])}, {job['chunks']} chunks")
    if job["status"] == "failed":
        st.error(f"The job stopped: {plain(job['error'] or '')}")
    elif failed:
        st.warning(
            f"{len(failed)} of {_files(len(job['results']))} failed; the others are indexed."
        )
    else:
        st.success(f"All {_files(len(job['results']))} ingested ({job['chunks']} new chunks).")
    if job["results"]:
        st.dataframe(
            pd.DataFrame(
                {
                    "file": [r["source"] for r in job["results"]],
                    "status": [r["status"] for r in job["results"]],
                    "reason": [r.get("reason", "") for r in job["results"]],
                }
            ),
            hide_index=True,
            width="stretch",
        )


# -- documents ----------------------------------------------------------------------------
def documents_page(api: EnclaveClient) -> None:
    st.header("Documents")
    docs = api.documents()
    if not docs:
        st.info("No documents yet. Ingest some on the Ingestion page.")
        return
    search, group_filter = st.columns([2, 1])
    text = search.text_input("Search title or source", key="doc-search").strip().lower()
    all_groups = sorted({g for d in docs for g in d["groups"]})
    groups = group_filter.multiselect("Groups", all_groups, key="doc-groups")
    shown = [
        d
        for d in docs
        if (not text or text in f"{d['title']} {d['source']}".lower())
        and (not groups or set(groups) & set(d["groups"]))
    ]
    st.caption(f"{len(shown)} of {len(docs)} documents")
    st.dataframe(
        pd.DataFrame(
            {
                "title": [d["title"] for d in shown],
                "source": [d["source"] for d in shown],
                "groups": [", ".join(d["groups"]) for d in shown],
                "tags": [", ".join(d["tags"]) for d in shown],
                "chunks": [d["chunks"] for d in shown],
                "ingested at": [d["ingested_at"] for d in shown],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    labels = {d["doc_id"]: f"{d['title']} ({PurePath(d['source']).name})" for d in shown}
    with st.form("delete"):
        doomed = st.multiselect(
            "Delete documents", list(labels), format_func=labels.__getitem__, key="doc-delete"
        )
        if st.form_submit_button("Delete selected", icon=":material/delete:") and doomed:
            for doc_id in doomed:
                api.delete_document(doc_id)
            st.session_state.deleted = len(doomed)
            st.rerun()
    if deleted := st.session_state.pop("deleted", 0):
        st.success(f"Deleted {deleted} document(s) and their chunks.")


# -- access rules -------------------------------------------------------------------------
def access_page(api: EnclaveClient) -> None:
    st.header("Access")
    st.caption(
        "Who may read what: each rule gives the documents under a folder, file or source to "
        "some groups; the most specific rule wins, and a document no rule covers is visible "
        "to admins only. A change applies at once to the documents already ingested."
    )
    if message := st.session_state.pop("access-done", ""):
        st.success(message)
    with st.form("access-set"):
        path = st.text_input("Folder, file or source", key="access-path")
        groups = st.text_input("Groups (comma-separated)", key="access-groups")
        if st.form_submit_button("Save rule", type="primary"):
            if not path.strip() or not _names(groups):
                st.warning("Name a folder, file or source, and at least one group.")
            else:
                change = api.set_access_rule(path.strip(), _names(groups))
                st.session_state["access-done"] = (
                    f"{change['prefix']}: {', '.join(change['after'] or [])} "
                    f"({change['documents']} documents changed)"
                )
                st.rerun()
    listing = api.access_rules()
    rules = listing["rules"]
    if listing["pending"]:
        st.warning(
            f"{listing['pending']} documents still differ from their rules (an interrupted "
            "change): save any rule again, or run `enclave access apply`."
        )
    if not rules:
        st.info("No access rules yet: every document is visible to admins only.")
    else:
        st.dataframe(
            pd.DataFrame(
                {
                    "folder, file or source": [r["prefix"] for r in rules],
                    "groups": [", ".join(r["groups"]) for r in rules],
                    "documents": [r["documents"] for r in rules],
                    "updated": [f"{r['updated_at']} by {r['updated_by']}" for r in rules],
                }
            ),
            hide_index=True,
            width="stretch",
        )
        with st.form("access-remove"):
            doomed = st.selectbox("Remove a rule", [r["prefix"] for r in rules], key="access-rm")
            if st.form_submit_button("Remove rule", icon=":material/delete:") and doomed:
                change = api.remove_access_rule(doomed)
                st.session_state["access-done"] = (
                    f"Removed the rule of {change['prefix']} ({change['documents']} documents "
                    "changed)"
                )
                st.rerun()
    st.subheader("History")
    changes = api.access_history()
    if not changes:
        st.caption("No changes yet.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "time": [c["time"] for c in changes],
                "who": [c["actor"] for c in changes],
                "folder, file or source": [c["prefix"] for c in changes],
                "before": [", ".join(c["before"]) if c["before"] else "-" for c in changes],
                "after": [", ".join(c["after"]) if c["after"] else "(removed)" for c in changes],
                "documents": [c["documents"] for c in changes],
            }
        ),
        hide_index=True,
        width="stretch",
    )


# -- usage --------------------------------------------------------------------------------
def usage_page(api: EnclaveClient) -> None:
    st.header("Usage")
    days = st.selectbox("Period", [7, 30, 90, 365], index=1, format_func=lambda d: f"last {d} days")
    usage = api.usage(days)
    per_day = pd.DataFrame(usage["questions_per_day"])
    feedback = usage["feedback"]
    total = int(per_day["questions"].sum()) if not per_day.empty else 0
    a, b, c, d = st.columns(4)
    a.metric("Questions", total)
    b.metric("Not answered", int(per_day["abstained"].sum()) if total else 0)
    c.metric("Thumbs up / down", f"{feedback['up']} / {feedback['down']}")
    ratio = feedback["ratio"]
    d.metric("Positive feedback", "-" if ratio is None else f"{ratio:.0%}")
    st.subheader("Questions per day")
    if total:
        st.bar_chart(per_day.set_index("date")[["answered", "abstained", "failed"]])
    else:
        st.caption("No questions in this period.")
    st.subheader("Latency per stage (ms)")
    latency = usage["latency_ms"]
    if latency:
        frame = pd.DataFrame(
            {
                "p50": [v["p50"] for v in latency.values()],
                "p95": [v["p95"] for v in latency.values()],
            },
            index=list(latency),
        )
        st.bar_chart(frame, stack=False)
        st.dataframe(frame.round(1), width="stretch")
    else:
        st.caption("No timings yet.")
    left, right = st.columns(2)
    with left:
        st.subheader("Most-cited documents")
        top = usage["top_documents"]
        if top:
            st.dataframe(
                pd.DataFrame(
                    {
                        "document": [t["title"] for t in top],
                        "citations": [t["citations"] for t in top],
                    }
                ),
                hide_index=True,
                width="stretch",
            )
        else:
            st.caption("No citations yet.")
    with right:
        st.subheader("Unanswered questions")
        unanswered = usage["unanswered"]
        if unanswered:
            st.dataframe(pd.DataFrame(unanswered), hide_index=True, width="stretch")
        else:
            st.caption("None: every question got an answer nobody disliked.")


# -- quality ------------------------------------------------------------------------------
RETRIEVAL_METRICS = ["ndcg@10", "recall@10", "recall@100", "mrr@10"]


def quality_page(api: EnclaveClient) -> None:
    st.header("Quality")
    st.caption(
        "The latest evaluation on labelled data, run on the server with `make eval` "
        "(or `enclave eval retrieval|answers`)."
    )
    quality = api.quality()
    if not quality.get("retrieval") and not quality.get("answers"):
        st.info(
            "No evaluation has been run on this server yet. Run `make eval` (or "
            "`enclave eval retrieval DATA`) there; the latest report shows here."
        )
        return
    if record := quality.get("retrieval"):
        st.subheader(f"Retrieval: {plain(str(record['dataset']))}")
        st.caption(f"Run at {record['created_at']}")
        frame = _modes_frame(record["results"])
        st.dataframe(frame, width="stretch")
        metrics = [m for m in frame.columns if m in RETRIEVAL_METRICS]
        if metrics:
            st.bar_chart(frame[metrics], stack=False)
    if record := quality.get("answers"):
        st.subheader(f"Answers: {plain(str(record['dataset']))}")
        st.caption(f"Run at {record['created_at']}")
        results = dict(record["results"])
        generation = results.pop("generation", None)
        if results:
            frame = _modes_frame(results)
            st.dataframe(frame, width="stretch")
            recall = [m for m in frame.columns if m.startswith("recall@")]
            if recall:
                st.bar_chart(frame[recall], stack=False)
        if generation:
            figures = {
                k: v
                for k, v in generation.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            st.markdown(f"**Generated answers** ({plain(str(generation.get('model', '-')))})")
            st.dataframe(
                pd.DataFrame({"figure": list(figures), "value": list(figures.values())}),
                hide_index=True,
                width="stretch",
            )
            shares = {
                k: figures[k]
                for k in (
                    "exact_match",
                    "f1",
                    "contains_gold",
                    "cited",
                    "citation_support",
                    "verified",
                )
                if k in figures
            }
            if shares:
                st.bar_chart(pd.Series(shares, name="share"))


def _modes_frame(results: dict[str, Any]) -> pd.DataFrame:
    """Mode x metric (numbers only) from a record's ``results``."""
    rows = {
        mode: {k: v for k, v in values.items() if isinstance(v, int | float)}
        for mode, values in results.items()
        if isinstance(values, dict)
    }
    return pd.DataFrame.from_dict(rows, orient="index")
