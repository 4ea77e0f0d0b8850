"""The Streamlit app through ``streamlit.testing.v1.AppTest``, against a real API server
process on loopback (see conftest.py): sign-in, chat with citations, conversations,
feedback, the admin pages, and friendly errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from tests.ui.conftest import SECRET, Stack
from ui.client import EnclaveClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")
LEAVE_QUESTION = "How many days of annual leave do employees get?"


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Close the API clients the app sessions opened (AppTest never ends a session)."""
    opened: list[EnclaveClient] = []
    real_init = EnclaveClient.__init__

    def tracking_init(self: EnclaveClient, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        opened.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EnclaveClient, "__init__", tracking_init)
        yield
    for client in opened:
        client.close()


def signed_in(stack: Stack, key: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("ENCLAVE_API_URL", stack.url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.text_input[0].input(key)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def asked(stack: Stack, key: str, question: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """Signed in with ``key``, after asking ``question`` in the chat."""
    at = signed_in(stack, key, monkeypatch)
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Every piece of text the page shows."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += (
        [e.value for e in at.error] + [e.value for e in at.info] + [e.value for e in at.warning]
    )
    parts += [str(t.value) for t in at.text] + [h.proto.body for h in at.get("html")]
    return "\n".join(str(p) for p in parts)


def api_get(stack: Stack, key: str, path: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.get(stack.url + path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_sign_in_rejects_bad_keys_and_a_user_sees_only_the_chat(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENCLAVE_API_URL", stack.url)
    # the old pre-fill variable no longer hands a key to every visitor
    monkeypatch.setenv("ENCLAVE_UI_API_KEY", stack.admin_key)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert at.text_input[0].value == ""
    at.text_input[0].input("enc_000000000000_notarealsecretatall")
    at.button[0].click().run()
    assert "not accepted" in at.error[0].value
    assert not at.exception

    at.text_input[0].input(stack.user_key)
    at.button[0].click().run()
    assert not at.error
    assert at.sidebar.radio[0].options == ["Chat"]  # a user key: no admin pages
    assert "(user; staff)" in texts(at)


def test_a_sign_in_link_works_once_and_only_from_this_machine(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from core.settings import Settings
    from serving.cli.launcher import sign_in_link

    monkeypatch.setenv("ENCLAVE_API_URL", stack.url)
    token, grant = sign_in_link(Settings(data_dir=tmp_path), stack.admin_key)
    assert grant.stat().st_mode & 0o077 == 0  # the key in it is readable by this user only
    monkeypatch.setenv("ENCLAVE_UI_SIGNIN_FILE", str(grant))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["signin"] = "not-the-token"
    at.run()
    assert not at.sidebar.radio  # not signed in
    assert "used already or is no longer valid" in at.error[0].value
    assert grant.exists()  # a wrong token spends nothing

    # AppTest's session reports a client address (not loopback): like a browser on another
    # machine, the right token is refused there and not spent (tests/ui/test_browser.py
    # signs in with it from loopback, once)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["signin"] = token
    at.run()
    assert "only in a browser on the machine that runs Enclave" in at.error[0].value
    assert not at.sidebar.radio
    assert grant.exists()


def test_the_api_being_down_is_one_friendly_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_API_URL", "http://127.0.0.1:9")
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.text_input[0].input("enc_000000000000_whatever-whatever")
    at.button[0].click().run()
    assert not at.exception
    assert at.error[0].value.startswith("Enclave's API at http://127.0.0.1:9 cannot be reached")
    assert "Traceback" not in texts(at)


def test_chat_cites_opens_the_passage_keeps_the_conversation_and_takes_feedback(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = signed_in(stack, stack.user_key, monkeypatch)
    assert at.sidebar.selectbox[0].options == ["Automatic", "quick", "thorough"]

    at.chat_input[0].set_value(LEAVE_QUESTION).run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "25 days" in shown
    chips = at.pills[0]
    assert chips.options
    assert all("[" in o for o in chips.options)
    assert any("Leave" in o or "leave" in o for o in chips.options), chips.options

    chips.set_value(chips.options[0]).run()  # open the first citation
    passage = [h.proto.body for h in at.get("html") if "enclave-passage" in h.proto.body]
    assert passage
    assert "<mark>" in passage[0], passage
    assert "25 days" in passage[0]
    at.button(key=next(b.key for b in at.button if b.key and b.key.startswith("open-"))).click()
    at.run()
    download = at.get("download_button")
    assert download
    assert "leave.md" in download[0].proto.label

    # feedback, with a comment, reaches the audit log
    at.feedback[0].set_value(0).run()
    at.text_input(key=next(t.key for t in at.text_input if t.key.startswith("fbc-"))).input(
        "It should mention carry-over"
    ).run()
    assert "Comment saved." in texts(at)
    usage = api_get(stack, stack.admin_key, "/v1/usage", days=1)
    assert usage["feedback"]["down"] >= 1

    # a follow-up stays in the same conversation
    at.chat_input[0].set_value("And how many of those carry over?").run()
    assert not at.exception
    conversations = api_get(stack, stack.user_key, "/v1/conversations")["conversations"]
    assert len(conversations) == 1
    assert conversations[0]["turns"] == 2
    assert conversations[0]["title"] == LEAVE_QUESTION
    assert len(at.chat_message) == 4

    # a new conversation, then back to the first one, then delete it
    at.sidebar.button[0].click().run()  # New conversation
    assert len(at.chat_message) == 0
    first = conversations[0]["conversation_id"]
    at.sidebar.button(key=f"conv-{first}").click().run()
    assert len(at.chat_message) == 4
    assert at.pills, "citations of a reloaded conversation are clickable too"
    delete = next(b for b in at.sidebar.button if b.label == "Delete this conversation")
    delete.click().run()
    assert len(at.chat_message) == 0
    assert api_get(stack, stack.user_key, "/v1/conversations")["conversations"] == []


def test_a_user_never_sees_a_document_outside_their_groups(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    question = "What is the approval code for salary band changes?"
    at = asked(stack, stack.user_key, question, monkeypatch)
    shown = texts(at)
    assert SECRET not in shown
    assert "salaries" not in shown.lower()
    for chips in at.pills:
        assert not any("alar" in o for o in chips.options)


def test_a_question_nothing_covers_shows_the_not_found_state(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = asked(stack, stack.user_key, "zxqv wombat trampoline quasar", monkeypatch)
    assert any("Not found in your documents" in i.value for i in at.info)


def test_admin_ingests_a_server_folder_and_manages_documents(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = signed_in(stack, stack.admin_key, monkeypatch)
    assert at.sidebar.radio[0].options == [
        "Chat",
        "Ingestion",
        "Documents",
        "Access",
        "Usage",
        "Quality",
    ]

    at.sidebar.radio[0].set_value("Ingestion").run()
    at.text_input(key="folder-groups").input("staff")
    path_box = next(t for t in at.text_input if t.label.startswith("Folder or file"))
    path_box.input(str(stack.data.parent / "elsewhere"))
    submit = [b for b in at.button if b.label == "Start ingestion"]
    submit[1].click().run()
    assert "is outside the folders the server may ingest" in at.error[0].value
    assert not at.exception

    path_box = next(t for t in at.text_input if t.label.startswith("Folder or file"))
    path_box.input(str(stack.inbox))
    submit = [b for b in at.button if b.label == "Start ingestion"]
    submit[1].click().run(timeout=180)
    assert not at.exception, at.exception
    assert any("All 1 file ingested" in s.value for s in at.success), texts(at)
    history = at.dataframe[-1].value
    assert history["status"].iloc[0] == "done"

    at.sidebar.radio[0].set_value("Documents").run()
    table = at.dataframe[0].value
    assert {"leave.md", "salaries.md", "expenses.md"} <= {Path(s).name for s in table["source"]}
    at.text_input(key="doc-search").input("expenses").run()
    assert list(at.dataframe[0].value["source"].map(lambda s: Path(s).name)) == ["expenses.md"]
    doomed = at.multiselect(key="doc-delete")
    doomed.set_value(doomed.options[:1])
    next(b for b in at.button if b.label == "Delete selected").click().run()
    assert any("Deleted 1 document" in s.value for s in at.success)
    names = {
        Path(d["source"]).name
        for d in api_get(stack, stack.admin_key, "/v1/documents")["documents"]
    }
    assert "expenses.md" not in names
    assert "leave.md" in names


def test_admin_sets_and_removes_an_access_rule(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = signed_in(stack, stack.admin_key, monkeypatch)
    at.sidebar.radio[0].set_value("Access").run()
    rules = at.dataframe[0].value  # the rules the fixture's `ingest --groups` recorded
    assert {Path(p).name: g for p, g in zip(rules.iloc[:, 0], rules["groups"], strict=True)}[
        "hr"
    ] == "hr"
    source = "https://intranet.example.org/handbook"
    at.text_input(key="access-path").input(source)
    at.text_input(key="access-groups").input("staff, board")
    next(b for b in at.button if b.label == "Save rule").click().run()
    assert not at.exception, at.exception
    assert any(f"{source}: staff, board (0 documents changed)" in m.value for m in at.success)
    listed = api_get(stack, stack.admin_key, "/v1/access/rules")["rules"]
    assert {r["prefix"]: r["groups"] for r in listed}[source] == ["staff", "board"]

    at.selectbox(key="access-rm").set_value(source)
    next(b for b in at.button if b.label == "Remove rule").click().run()
    assert any(f"Removed the rule of {source}" in m.value for m in at.success)
    history = at.dataframe[-1].value
    assert list(history["after"][:2]) == ["(removed)", "staff, board"]
    listed = api_get(stack, stack.admin_key, "/v1/access/rules")["rules"]
    assert source not in {r["prefix"] for r in listed}


def test_admin_usage_and_quality_pages_show_figures(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = asked(stack, stack.admin_key, LEAVE_QUESTION, monkeypatch)  # one question today
    at.sidebar.radio[0].set_value("Usage").run()
    assert not at.exception, at.exception
    questions = next(m for m in at.metric if m.label == "Questions")
    assert int(questions.value) >= 1
    assert at.get("vega_lite_chart"), "charts are drawn"

    at.sidebar.radio[0].set_value("Quality").run()
    assert not at.exception, at.exception
    assert any("Retrieval: tiny-beir" in s.value for s in at.subheader)
    frame = at.dataframe[0].value
    assert "hybrid" in frame.index
    assert 0 < frame.loc["hybrid", "ndcg@10"] <= 1
