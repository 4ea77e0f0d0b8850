"""The web UI as an ASGI app: Streamlit's ``st.App`` running ``ui/app.py``, with security
headers on every response (``enclave ui`` runs ``streamlit run ui/serve.py``).

The Content-Security-Policy allows the UI's own origin only: no script, style, image,
font, frame or connection to any other host, so nothing a document or the model writes
can make the browser call out, even if it slipped past the rendering in ``ui/safe.py``.
Streamlit's one inline bootstrap script is allowed by its SHA-256, read from the
installed Streamlit at start, not by allowing inline scripts in general.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes() -> list[str]:
    """CSP sources for the inline scripts of Streamlit's index.html."""
    index = resources.files("streamlit") / "static" / "index.html"
    page = index.read_text(encoding="utf-8")
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(page)
    ]


def content_security_policy() -> str:
    scripts = " ".join(["'self'", *inline_script_hashes()])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",  # Streamlit styles its elements inline
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "media-src 'self' data: blob:",
            "connect-src 'self'",
            "frame-src 'self' blob:",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'self'",
        ]
    )


class SecurityHeaders:
    """ASGI middleware adding the CSP and related headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", content_security_policy().encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"SAMEORIGIN"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, with_headers)


app = st.App(str(Path(__file__).with_name("app.py")), middleware=[Middleware(SecurityHeaders)])
