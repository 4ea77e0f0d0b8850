"""Enclave's web UI (Streamlit): ``enclave ui`` runs ``streamlit run`` on this file.

A client of the query API over HTTP only (``ENCLAVE_API_URL``): sign in with an API key,
then the key's role decides the pages: everyone chats; admins also ingest, manage
documents and read usage and quality figures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

import streamlit as st

from ui import admin, chat
from ui.client import ApiCallError, EnclaveClient
from ui.safe import plain
from ui.session import client, notice, sign_out

logger = logging.getLogger("enclave.ui")

DEFAULT_API_URL = "http://127.0.0.1:8000"
SIGNIN_FILE_ENV = "ENCLAVE_UI_SIGNIN_FILE"
ICON = Path(__file__).with_name("icon.png")
PAGES = {
    "Chat": chat.page,
    "Ingestion": admin.ingestion_page,
    "Documents": admin.documents_page,
    "Access": admin.access_page,
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
    if "signin" in st.query_params:
        token = str(st.query_params.get("signin") or "")
        st.query_params.clear()  # the link works once; keep it out of the address bar
        key, problem = redeem_link(token)
        if key is not None and _start_session(key):
            return
        if problem:
            st.error(problem)
    with st.form("sign-in"):
        key = st.text_input(
            "API key",
            type="password",
            help="Your administrator creates keys with `enclave keys create`.",
        )
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    if not key.strip():
        st.error("Enter your API key to sign in.")
        return
    _start_session(key.strip())


def _start_session(key: str) -> bool:
    """Sign in with ``key`` (checked with the API); False after showing why not."""
    candidate = EnclaveClient(api_url(), key)
    try:
        me = candidate.me()
    except ApiCallError as problem:
        candidate.close()
        st.error(problem.friendly)
        return False
    st.session_state.client = candidate
    st.session_state.me = me
    st.rerun()
    return True  # pragma: no cover - st.rerun does not return


def redeem_link(token: str) -> tuple[str | None, str]:
    """The key behind a one-time sign-in link (``enclave up`` writes its grant to the file
    ENCLAVE_UI_SIGNIN_FILE names), or None and why not. The link works once, and only
    from this machine: the grant file is removed by the first session that redeems it."""
    used = "This sign-in link was used already or is no longer valid: sign in with a key."
    grant_file = os.environ.get(SIGNIN_FILE_ENV, "").strip()
    if not grant_file or not token:
        return None, used
    try:
        grant = json.loads(Path(grant_file).read_text(encoding="utf-8"))
        expected = str(grant["token_sha256"])
        key = str(grant["key"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, used
    offered = hashlib.sha256(token.encode("utf-8")).hexdigest()
    if not hmac.compare_digest(offered, expected):
        return None, used
    if st.context.ip_address is not None:  # Streamlit reports None for loopback
        return None, "Sign-in links work only in a browser on the machine that runs Enclave."
    try:
        Path(grant_file).unlink()  # one use: the session that removes the grant wins
    except FileNotFoundError:
        return None, used
    return key, ""


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
        who = plain(str(me.get("name") or me.get("key_id")))
        st.caption(f"Signed in as **{who}** ({me.get('role')}; {plain(groups)})")
        if st.button("Sign out", icon=":material/logout:"):
            sign_out()
            st.rerun()


main()
