"""The project's error hierarchy.

Every error Enclave raises on purpose derives from ``EnclaveError`` and carries a
message written for the person who has to act on it: what went wrong, with which
input, and what to do. Adapters in ``backends/`` translate vendor exceptions into
these (``raise ... from exc``); nothing above ``backends/`` catches a vendor type.

    EnclaveError
    ├── ConfigError            settings are invalid or inconsistent
    ├── StoreError             the vector store failed
    │   ├── StoreLockedError   an embedded store is held by another process
    │   └── CollectionMismatchError
    │                          the collection was built with another embedder/shape
    ├── ModelError             a model could not be loaded or run
    ├── LLMUnavailableError    the LLM server cannot be reached or failed mid-answer
    ├── InputError             a request or argument is invalid (bad query, filter, path)
    ├── DocumentError          one document could not be ingested (reported, job goes on)
    │   ├── UnsupportedFormatError
    │   ├── FileTooLargeError
    │   └── ParseError
    ├── AccessDeniedError      the caller asked for something outside their groups/role
    ├── NotFoundError          a named document (or other object) does not exist
    ├── ConflictError          the object changed since it was recorded (a source file
    │                          edited after ingestion), or too many of something at once
    └── QueueError             the ingestion queue cannot be reached or used
"""

from __future__ import annotations


class EnclaveError(Exception):
    """Root of every error Enclave raises on purpose."""


class ConfigError(EnclaveError):
    """The settings are invalid or inconsistent."""


class StoreError(EnclaveError):
    """The vector store failed or cannot be reached."""


class StoreLockedError(StoreError):
    """An embedded store is held by another process."""


class CollectionMismatchError(StoreError):
    """The collection was built with a different embedder or vector shape."""


class ModelError(EnclaveError):
    """A model could not be loaded or run."""


class LLMUnavailableError(EnclaveError):
    """The LLM server cannot be reached, timed out, or failed mid-answer."""


class InputError(EnclaveError):
    """A request or argument is invalid."""


class AccessDeniedError(EnclaveError):
    """The caller asked for something outside their groups."""


class DocumentError(EnclaveError):
    """One document could not be ingested; the job reports it and goes on."""


class UnsupportedFormatError(DocumentError):
    """The file's type is not one Enclave can parse."""


class FileTooLargeError(DocumentError):
    """The file is over the configured size limit."""


class ParseError(DocumentError):
    """The file could not be parsed or holds no extractable text."""


class NotFoundError(EnclaveError):
    """A named object does not exist."""


class ConflictError(EnclaveError):
    """The object is not in the state the request needs: e.g. a document's file changed
    on the server since it was ingested."""


class QueueError(EnclaveError):
    """The Redis queue cannot be reached or used, or a queued job is unknown."""
