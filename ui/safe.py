"""Text from documents and from the model, rendered so that it can never make the browser
call out: no images, no links, no raw HTML, no auto-linked URLs.

Answers keep simple formatting (paragraphs, emphasis, lists, code) through markdown-it-py
with HTML off and every rule that makes a link or an image disabled; the HTML it gives
is then shown with ``st.html`` (sanitised again by Streamlit). Titles, file names and
other labels are plain text. The page's Content-Security-Policy (``ui/serve.py``) is the
second fence: it forbids every host but the UI's own.
"""

from __future__ import annotations

import html

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).disable(
    ["image", "link", "autolink", "html_inline", "html_block", "reference"]
)
ANSWER_STYLE = "line-height:1.55;overflow-wrap:anywhere"


def answer_html(text: str) -> str:
    """An answer (or a question) as safe HTML: formatting kept, links and images shown as
    the plain text they are."""
    rendered = _MD.render(text)
    return f'<div class="enclave-answer" style="{ANSWER_STYLE}">{rendered}</div>'


def plain(text: str) -> str:
    """A label (title, file name) for ``st.markdown``: every Markdown and HTML character
    escaped, so it shows as written and renders nothing."""
    escaped = html.escape(text, quote=False)
    for literal, broken in _AUTOLINKS:  # GFM links bare URLs even when ':' is escaped
        escaped = escaped.replace(literal, broken)
    return "".join("\\" + ch if ch in _MARKDOWN_PUNCTUATION else ch for ch in escaped)


# what could form a link, an image, an auto-linked URL, HTML, code, maths or emphasis
_MARKDOWN_PUNCTUATION = frozenset("\\`*_[]()!|~$:<>")
_JOINER = "\u2060"  # WORD JOINER: invisible, and breaks the literal GFM would link
_AUTOLINKS = (("://", f":{_JOINER}//"), ("www.", f"www{_JOINER}."), ("@", f"{_JOINER}@"))
