"""Per-browser-session state: the signed-in client and a message for the sign-in page."""

from __future__ import annotations

from typing import cast

import streamlit as st

from ui.client import EnclaveClient


def client() -> EnclaveClient:
    """The signed-in session's API client."""
    return cast(EnclaveClient, st.session_state.client)


def sign_out(message: str = "") -> None:
    """Forget the key and everything fetched with it; show ``message`` on the sign-in page."""
    signed_in = st.session_state.get("client")
    if isinstance(signed_in, EnclaveClient):
        signed_in.close()
    st.session_state.clear()
    if message:
        st.session_state.notice = message


def notice() -> str:
    """The message left by :func:`sign_out`, once."""
    return str(st.session_state.pop("notice", ""))
