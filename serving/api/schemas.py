"""The API's request and response models: what the OpenAPI schema documents. Requests are
strict (a value the schema does not allow is a 422, never coerced); responses are typed,
so the schema shows every field of hits, passages, documents and jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from backends.sql.app import Job
from backends.sql.registry import RegisteredDocument
from core.types import Chunk, Citation, Claim
from serving.answers.views import HitOut, NeighbourOut, PassageOut

__all__ = ["HitOut", "NeighbourOut", "PassageOut"]

AUTO_MODEL = "enclave"
"""The model name that lets Enclave's router choose (``/v1/chat/completions``)."""
MAX_QUESTION_SCHEMA = 100_000  # hard schema cap; the configured limit is checked with a clear 400
MAX_MESSAGES = 200  # chat history a request may carry

# Request bodies are strict: a value the schema does not allow (`"stream": 0`, `"top_k": "5"`)
# is a 422, not coerced. JSON Schema's integer includes 5.0, so that one is taken as 5.
Filters = dict[str, str | list[str]]
WHOLE = BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    question: str = Field(min_length=1, max_length=MAX_QUESTION_SCHEMA)
    conversation_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    model: str | None = Field(None, description="A model from GET /v1/models (default: routed).")
    filters: Filters | None = Field(
        None, description="source, tag, mime_type, doc_id, modified_after, modified_before."
    )
    top_k: Annotated[int, Field(ge=1, le=50), WHOLE] | None = None
    stream: bool = Field(False, description="Server-sent events instead of one JSON body.")


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AskResponse(BaseModel):
    answer: str
    answer_id: str = Field(description="The audit entry's id; feedback names it.")
    citations: list[Citation]
    claims: list[Claim] = Field(
        description="Each sentence of the answer checked against the passages: the span that "
        "supports it (block `n`, chunk, page, offsets in the chunk, the quote verbatim), or "
        "`supported: false`."
    )
    passages: list[PassageOut] = Field(description="The numbered passages the LLM was given.")
    model: str
    conversation_id: str
    abstained: bool
    usage: UsageOut


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    query: str = Field(min_length=1, max_length=MAX_QUESTION_SCHEMA)
    top_k: Annotated[int, Field(ge=1, le=100), WHOLE] | None = None
    mode: Literal["dense", "sparse", "hybrid"] | None = None
    filters: Filters | None = None


class SearchResponse(BaseModel):
    hits: list[HitOut]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # OpenAI clients send many fields
    model: str = Field(AUTO_MODEL, description=f"A model from /v1/models; `{AUTO_MODEL}` routes.")
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        description=f"At most {MAX_MESSAGES}; the last user message is the question and only "
        "the latest turns before it (ENCLAVE_LLM__HISTORY_TURNS) are used.",
    )
    stream: bool = False


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    answer_id: str = Field(min_length=1, max_length=64)
    rating: Literal["up", "down"]
    comment: str = Field("", max_length=4000)


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="A file or folder on the server, inside ENCLAVE_API__INGEST_ROOTS.",
    )
    groups: list[str] | None = Field(
        None, description="Groups of the documents (default: folder groups, default groups)."
    )
    tags: list[str] | None = None


class AccessRuleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    path: str = Field(
        min_length=1,
        max_length=2048,
        description="A folder or file on the server (resolved), or a source id such as a URL.",
    )
    groups: list[str] = Field(
        min_length=1, max_length=100, description="The groups that may read what lies under it."
    )


class AccessRuleOut(BaseModel):
    prefix: str
    groups: list[str]
    origin: str = Field(description="`admin`, `upload`, or `upgrade` (kept from before rules).")
    updated_at: str
    updated_by: str
    documents: int = Field(description="Registered documents this rule decides now.")


class AccessRulesOut(BaseModel):
    rules: list[AccessRuleOut]
    pending: int = Field(
        description="Documents whose groups still differ from their rule (an interrupted "
        "change); the next change or `enclave access apply` fixes them."
    )


class AccessChangeOut(BaseModel):
    prefix: str
    before: list[str] | None = Field(description="The groups before; null: there was no rule.")
    after: list[str] | None = Field(description="The groups now; null: the rule was removed.")
    documents: int = Field(description="Documents whose groups changed.")


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="`ok`, or why the store / the LLM is not ready.")


class MeOut(BaseModel):
    key_id: str
    name: str
    role: Literal["admin", "user"]
    groups: list[str]


class DocumentOut(BaseModel):
    doc_id: str
    source: str
    title: str
    chunks: int
    groups: list[str] = Field(description="Who may read it (from its access rule; [] admins only).")
    tags: list[str]
    mime_type: str
    size_bytes: int
    modified_at: str
    ingested_at: str

    @classmethod
    def from_domain(cls, record: RegisteredDocument) -> DocumentOut:
        return cls(**record.as_dict())


class DocumentsOut(BaseModel):
    documents: list[DocumentOut]


class ChunkOut(BaseModel):
    chunk_id: str
    chunk_index: int
    page: int | None
    text: str

    @classmethod
    def from_domain(cls, chunk: Chunk) -> ChunkOut:
        return cls(
            chunk_id=chunk.id, chunk_index=chunk.chunk_index, page=chunk.page, text=chunk.text
        )


class SourceOut(BaseModel):
    """A document the key may read, with its chunks inside the key's groups."""

    doc_id: str
    source: str
    title: str
    chunks: list[ChunkOut]
    groups: list[str]
    tags: list[str]
    mime_type: str
    size_bytes: int
    modified_at: str
    ingested_at: str

    @classmethod
    def of(cls, record: RegisteredDocument, chunks: list[Chunk]) -> SourceOut:
        return cls(**{**record.as_dict(), "chunks": [ChunkOut.from_domain(c) for c in chunks]})


class JobOut(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    created_at: float
    updated_at: float
    total_files: int
    done_files: int
    chunks: int
    results: list[dict[str, str]] = Field(
        description="Per file: `source`, `status` (`ingested`, `failed`), `reason` if failed."
    )
    error: str | None
    warnings: list[str] = Field(description="E.g. documents that no access rule covers.")

    @classmethod
    def from_domain(cls, job: Job) -> JobOut:
        return cls(
            job_id=job.id,
            status=job.status,  # type: ignore[arg-type]
            created_at=job.created_at,
            updated_at=job.updated_at,
            total_files=job.total_files,
            done_files=job.done_files,
            chunks=job.chunks,
            results=job.results,
            error=job.error,
            warnings=job.warnings,
        )


class JobsOut(BaseModel):
    jobs: list[JobOut]


class JobStarted(BaseModel):
    job_id: str
    status: Literal["queued"]
    files: int | None = Field(None, description="Files received (uploads).")


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "enclave"


class ModelsOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class ConversationOut(BaseModel):
    conversation_id: str
    title: str = Field(description="The first question, cut to 80 characters.")
    turns: int
    updated_at: str


class ConversationsOut(BaseModel):
    conversations: list[ConversationOut]


class TurnOut(BaseModel):
    question: str
    answer: str
    answer_id: str | None
    citations: list[dict[str, Any]]
    time: str


class TurnsOut(BaseModel):
    conversation_id: str
    turns: list[TurnOut]


class Status(BaseModel):
    status: str


class DocumentDeleted(BaseModel):
    status: Literal["deleted"] = "deleted"
    doc_id: str


class ConversationDeleted(BaseModel):
    status: Literal["deleted"] = "deleted"
    conversation_id: str


class AccessHistoryOut(BaseModel):
    changes: list[dict[str, Any]] = Field(
        description="Newest first: `time`, `actor`, `prefix`, `before`, `after`, `documents`."
    )
