"""The one error type of the service: a machine code plus a human sentence.

Domain code raises `RagError`; the HTTP layer maps `code` to a status through `HTTP_STATUS`
and renders `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

HTTP_STATUS: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "collection_not_found": 404,
    "document_not_found": 404,
    "job_not_found": 404,
    "adapter_not_found": 404,
    "api_key_not_found": 404,
    "not_found": 404,
    "asset_not_found": 404,
    "collection_exists": 409,
    "conflict": 409,
    "migration_running": 409,
    "embedder_active": 409,
    "no_previous_embedder": 409,
    # The adapter was trained for another base model than the one served.
    "adapter_base_mismatch": 409,
    "file_too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "unknown_embedder": 422,
    "unparseable_document": 422,
    "empty_document": 422,
    "rate_limited": 429,
    "database_unavailable": 503,
    "index_unavailable": 503,
    "broker_unavailable": 503,
    "generator_unavailable": 503,
    # The model's reply broke the step's schema even after one repair attempt.
    "generator_invalid_output": 502,
}


class RagError(Exception):
    """A failure with a stable machine code and a message a person can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)


class DocumentError(RagError):
    """A single document cannot be ingested (broken, empty, unsupported); it fails alone."""
