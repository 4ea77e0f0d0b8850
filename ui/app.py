"""Enclave's web UI (Streamlit): ``enclave ui`` runs ``streamlit run`` on this file.

A client of the query API over HTTP only (``ENCLAVE_API_URL``): sign in with an API key,
then the key's role decides the pages: everyone chats; admins also ingest, manage
documents and read usage and quality figures.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import streamlit as st

from ui import admin, chat
from ui.client import ApiCallError, EnclaveClient
from ui.session import client, notice, sign_out

logger = logging.getLogger("enclave.ui")

DEFAULT_API_URL = "http://127.0.0.1:8000"
ICON = Path(__file__).with_name("icon.png")
PAGES = {
    "Chat": chat.page,
    "Ingestion": admin.ingestion_page,
    "Documents": admin.documents_page,
    "Usage": admin.usage_page,
    "Quality": admin.quality_page,
}


def api_url() -> str:
    return os.environ.get("ENCLAVE_API_URL", "").strip() or DEFAULT_API_URL


def sign_in() -> None:
    st.title("Enclave")
    st.caption("Ask your organisation's documents. Nothing leaves your premises.")
    if message := notice():
        st.error(message)
    with st.form("sign-in"):
        key = st.text_input(
            "API key",
            value=os.environ.get("ENCLAVE_UI_API_KEY", ""),
            type="password",
            help="Your administrator creates keys with `enclave keys create`.",
        )
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    if not key.strip():
        st.error("Enter your API key to sign in.")
        return
    candidate = EnclaveClient(api_url(), key.strip())
    try:
        me = candidate.me()
    except ApiCallError as problem:
        candidate.close()
        st.error(problem.friendly)
        return
    st.session_state.client = candidate
    st.session_state.me = me
    st.rerun()


def main() -> None:
    # a local icon: a Material icon name here would make the browser fetch it from Google
    st.set_page_config(page_title="Enclave", page_icon=str(ICON), layout="wide")
    if "client" not in st.session_state:
        sign_in()
        return
    me = st.session_state.me
    admin_role = me.get("role") == "admin"
    names = list(PAGES) if admin_role else ["Chat"]
    with st.sidebar:
        st.title("Enclave")
        choice = st.radio("Page", names, key="page", label_visibility="collapsed")
    try:
        PAGES[choice](client())
    except ApiCallError as problem:
        if problem.signed_out:
            sign_out(problem.friendly)
            st.rerun()
        st.error(problem.friendly)
    except Exception:  # a bug of the UI itself: logged, one sentence for the user
        logger.exception("UI page %s failed", choice)
        st.error(
            "Something unexpected went wrong in the web UI. Reload the page; if it keeps "
            "happening, tell your administrator."
        )
    with st.sidebar:
        st.divider()
        groups = ", ".join(me.get("groups") or []) or "no groups"
        st.caption(
            f"Signed in as **{me.get('name') or me.get('key_id')}** ({me.get('role')}; {groups})"
        )
        if st.button("Sign out", icon=":material/logout:"):
            sign_out()
            st.rerun()


main()
