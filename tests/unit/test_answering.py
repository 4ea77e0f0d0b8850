"""Answer logic with fakes: citations, quotes, claims, packing, routing, abstention, redaction."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any

import anyio
import pytest

from core.errors import InputError
from core.settings import LLMSettings
from core.types import Chunk, Hit, Principal, Usage
from serving.answers import (
    NOT_COVERED,
    Answerer,
    Completed,
    Retrieved,
    Router,
    Token,
    best_quote,
    extract_citations,
    is_complex,
    pack,
)
from serving.answers.claims import content_words, verify_claims

USER = Principal("u", groups=("staff",))


def hit(n: int, text: str, page: int | None = None) -> Hit:
    chunk = Chunk(
        id=f"c{n}",
        doc_id=f"d{n}",
        source=f"/kb/doc{n}.pdf",
        title=f"Doc {n}",
        text=text,
        chunk_index=0,
        pages=(page,) if page else (),
        heading_path=(),
        content_hash="h",
        modified_at=0.0,
        mime_type="application/pdf",
        groups=("staff",),
    )
    return Hit(chunk=chunk, score=1.0, relevance=0.5)


LEAVE = hit(1, "Employees get 25 days of annual leave. Up to 5 days carry over to March.", 3)
TRAVEL = hit(2, "Book travel through TravelDesk. The per diem is 45 euros per day.")


class FakeGenerator:
    def __init__(self, name: str, role: str, reply: str = "Answer [1].", window: int = 4096):
        self.name = name
        self.role = role
        self.context_window = window
        self.reply = reply
        self.calls: list[list[dict[str, str]]] = []
        self.closed = False

    def check(self) -> None:
        pass

    def stream(
        self, messages: Sequence[dict[str, str]], max_tokens: int, temperature: float = 0.1
    ) -> Generator[str | Usage, None, None]:
        self.calls.append(list(messages))
        try:
            for word in self.reply.split(" "):
                yield word + " "
            yield Usage(100, len(self.reply.split(" ")))
        finally:
            self.closed = True

    async def astream(
        self, messages: Sequence[dict[str, str]], max_tokens: int, temperature: float = 0.1
    ) -> AsyncGenerator[str | Usage, None]:
        for piece in self.stream(messages, max_tokens, temperature):
            yield piece

    async def aclose(self) -> None:
        pass


class FakeRetriever:
    def __init__(self, hits: list[Hit]):
        self.hits = hits
        self.queries: list[str] = []

    def search(self, query: str, principal: Principal, **kwargs: Any) -> list[Hit]:
        self.queries.append(query)
        return list(self.hits)


def answerer(
    hits: list[Hit], reply: str = "Answer [1].", **llm: Any
) -> tuple[Answerer, FakeGenerator]:
    gen = FakeGenerator("small-m", "small", reply)
    settings = LLMSettings(**llm)
    return Answerer(FakeRetriever(hits), Router({"small-m": gen}, settings), settings), gen  # type: ignore[arg-type]


def test_citations_map_to_blocks_and_drop_markers_pointing_nowhere() -> None:
    text = "You get 25 days of leave [1]. Per diem is 45 euros [2, 7]. Made up [9]."
    cleaned, citations = extract_citations(text, [LEAVE, TRAVEL])
    assert [c.n for c in citations] == [1, 2]
    assert "[9]" not in cleaned
    assert "[2]" in cleaned
    assert "[7]" not in cleaned
    assert cleaned.endswith("Made up.")
    first, second = citations
    assert (first.doc_id, first.page, first.title) == ("d1", 3, "Doc 1")
    assert first.quote == "Employees get 25 days of annual leave."
    assert second.quote == "The per diem is 45 euros per day."
    for c, h in zip(citations, (LEAVE, TRAVEL), strict=True):
        assert c.quote in h.chunk.text  # verbatim


def test_no_markers_no_citations_and_repeated_marker_cited_once() -> None:
    assert extract_citations("Nothing cited here.", [LEAVE]) == ("Nothing cited here.", ())
    _, citations = extract_citations("A [1]. B [1][1].", [LEAVE])
    assert [c.n for c in citations] == [1]


def test_quote_is_verbatim_and_bounded() -> None:
    long_sentence = "word " * 200 + "end."
    quote = best_quote(long_sentence, "word")
    assert quote in long_sentence
    assert len(quote) <= 300
    assert (
        best_quote("Carry over 5 days. Leave is 25 days.", "25 days leave") == "Leave is 25 days."
    )


def test_pack_respects_the_budget_in_rank_order() -> None:
    big = hit(3, "x " * 3000)
    assert pack([LEAVE, big, TRAVEL], budget_tokens=200) == [LEAVE, TRAVEL]
    (cut,) = pack([big], budget_tokens=100)  # even the best one alone is too long: cut it
    assert len(cut.chunk.text) < len(big.chunk.text)
    assert pack([], 100) == []


def test_router_choices() -> None:
    small = FakeGenerator("s", "small")
    large = FakeGenerator("l", "large")
    router = Router({"s": small, "l": large}, LLMSettings(complex_chars=50))
    assert router.choose("How many leave days?", False, None) is small
    assert router.choose("Compare the travel and leave policies", False, None) is large
    assert router.choose("What is A? And what is B?", False, None) is large
    assert router.choose("x" * 51, False, None) is large
    assert router.choose("and then?", True, None) is large  # follow-up
    assert router.choose("anything", False, "s") is small  # named model wins
    with pytest.raises(InputError, match=r"unknown model 'gpt-4'.*s, l"):
        router.choose("anything", False, "gpt-4")
    assert not is_complex("Where do I book travel?", False, 240)


def test_nothing_retrieved_abstains_without_calling_the_model() -> None:
    a, gen = answerer([])
    events = list(a.run("What is the capital of Peru?", USER))
    assert isinstance(events[0], Retrieved)
    assert events[0].passages == ()
    done = events[-1]
    assert isinstance(done, Completed)
    assert done.abstained
    assert done.answer.text == NOT_COVERED
    assert gen.calls == []


def test_answer_streams_tokens_then_completes_with_citations() -> None:
    a, gen = answerer([LEAVE, TRAVEL], reply="You get 25 days [1] and 45 euros [2].")
    events = list(a.run("leave and per diem?", USER))
    tokens = [e.text for e in events if isinstance(e, Token)]
    done = events[-1]
    assert isinstance(done, Completed)
    assert "".join(tokens).strip() == done.answer.text
    assert [c.n for c in done.answer.citations] == [1, 2]
    assert done.usage == Usage(100, 9)  # what the model reported
    (messages,) = gen.calls
    system = messages[0]["content"]
    assert messages[0]["role"] == "system"
    assert "[1] Doc 1, page 3\nEmployees get 25 days" in system
    assert "[2] Doc 2\nBook travel" in system
    assert messages[-1] == {"role": "user", "content": "leave and per diem?"}


def test_closing_the_answer_early_closes_the_model_stream() -> None:
    a, gen = answerer([LEAVE], reply="one two three four")
    events = a.run("leave?", USER)
    assert isinstance(next(events), Retrieved)
    assert isinstance(next(events), Token)
    events.close()  # type: ignore[attr-defined]
    assert gen.closed


def test_prompts_are_redacted_when_configured() -> None:
    secret = hit(1, "Contact jane.doe@example.com or +44 20 7946 0958 for leave.")
    a, gen = answerer([secret], redact_prompts=True)
    a.answer("Who do I contact, I am bob@example.org?", USER)
    sent = " ".join(m["content"] for m in gen.calls[0])
    assert "jane.doe@example.com" not in sent
    assert "bob@example.org" not in sent
    assert "+44 20 7946 0958" not in sent
    assert "[EMAIL]" in sent


def test_follow_up_is_rewritten_before_retrieval() -> None:
    a, gen = answerer([LEAVE], reply="annual leave carry over rules")
    a.answer("and how many carry over?", USER, history=[("How much leave do I get?", "25 days")])
    retriever = a.retriever
    assert retriever.queries == ["annual leave carry over rules"]  # type: ignore[attr-defined]
    rewrite_call = gen.calls[0]
    assert "How much leave do I get?" in rewrite_call[-1]["content"]


def test_unusable_rewrite_falls_back_to_previous_question_plus_follow_up() -> None:
    a, gen = answerer([LEAVE], reply="")
    a.answer("and abroad?", USER, history=[("Where do I book travel?", "TravelDesk")])
    # the model was asked for a rewrite (and gave nothing usable) before retrieval
    assert "Where do I book travel?" in gen.calls[0][-1]["content"]
    assert "and abroad?" in gen.calls[0][-1]["content"]
    assert a.retriever.queries == ["Where do I book travel? and abroad?"]  # type: ignore[attr-defined]


def test_empty_question_is_refused() -> None:
    a, _ = answerer([LEAVE])
    with pytest.raises(InputError, match="empty"):
        list(a.run("   ", USER))


def test_the_asynchronous_answer_is_the_synchronous_one() -> None:
    """``arun`` (the API's) gives the same events as ``run`` (the command line's)."""

    async def collect(a: Answerer) -> list[Any]:
        return [e async for e in a.arun("How many days of leave?", USER)]

    sync_answerer, _ = answerer([LEAVE, TRAVEL], reply="Employees get 25 days [1].")
    async_answerer, gen = answerer([LEAVE, TRAVEL], reply="Employees get 25 days [1].")
    expected = list(sync_answerer.run("How many days of leave?", USER))
    got = anyio.run(collect, async_answerer)
    assert [type(e) for e in got] == [type(e) for e in expected]
    assert [e.text for e in got if isinstance(e, Token)] == [
        e.text for e in expected if isinstance(e, Token)
    ]
    done, want = got[-1], expected[-1]
    assert isinstance(done, Completed)
    assert isinstance(want, Completed)
    assert (done.answer.text, done.answer.citations) == (want.answer.text, want.answer.citations)
    assert gen.closed


# -- claims: each sentence checked against the passages, whatever its markers ------------
def test_a_sentence_the_passage_says_is_supported_by_that_span() -> None:
    (claim,) = verify_claims(
        "Employees get 25 days of annual leave each year [2].", [TRAVEL, LEAVE]
    )
    assert claim.supported
    assert (claim.n, claim.chunk_id, claim.doc_id, claim.page) == (2, "c1", "d1", 3)
    assert claim.quote == "Employees get 25 days of annual leave."
    assert claim.quote_start is not None
    assert claim.quote_end is not None
    assert LEAVE.chunk.text[claim.quote_start : claim.quote_end] == claim.quote
    assert claim.text == "Employees get 25 days of annual leave each year."  # markers gone


def test_the_span_is_found_without_markers_and_in_the_right_block() -> None:
    answer = "The per diem is 45 euros per day. Unused days carry over to March."
    first, second = verify_claims(answer, [LEAVE, TRAVEL])
    assert (first.supported, first.n, first.quote) == (True, 2, "The per diem is 45 euros per day.")
    assert (second.supported, second.n) == (True, 1)
    assert second.quote == "Up to 5 days carry over to March."
    for claim in (first, second):  # offsets point into the answer
        assert answer[claim.start : claim.end].startswith(claim.text[:10])


def test_a_wrong_number_or_the_models_own_knowledge_is_unsupported() -> None:
    wrong, invented = verify_claims(
        "Employees get 30 days of annual leave [1]. Paris is the capital of France [1].",
        [LEAVE, TRAVEL],
    )
    assert not wrong.supported  # the words are there, the number is not
    assert wrong.quote is None
    assert wrong.n is None
    assert not invented.supported
    assert invented.score < 0.6


def test_sentences_without_content_are_not_claims_and_a_cited_block_wins_ties() -> None:
    same = hit(3, "Employees get 25 days of annual leave.")
    claims = verify_claims("Yes. Employees get 25 days of annual leave [2].", [LEAVE, same])
    assert len(claims) == 1
    assert claims[0].n == 2  # both blocks hold it; the cited one is named


def test_two_adjacent_sentences_can_support_one_claim() -> None:
    passage = hit(4, "The office opens at 8. It closes at 18 on weekdays.")
    (claim,) = verify_claims("The office opens at 8 and closes at 18.", [passage])
    assert claim.supported
    assert claim.quote == "The office opens at 8. It closes at 18 on weekdays."


def test_content_words_drop_stop_words_and_plurals_and_keep_numbers() -> None:
    words, numbers = content_words("The days of leave: 25 days, 2.5 weeks")
    assert words == {"day", "leave", "25", "2.5", "week"}
    assert numbers == {"25", "2.5"}


def test_every_answer_carries_its_checked_claims() -> None:
    a, _ = answerer([LEAVE], reply="Employees get 25 days of annual leave [1]. Pets are welcome.")
    done = a.answer("How much leave do I get?", USER)
    assert [c.supported for c in done.answer.claims] == [True, False]
    assert done.answer.claims[0].chunk_id == "c1"
