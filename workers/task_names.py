"""Task names, shared by producers (the API) and the worker, so neither imports the other."""

INGEST_DOCUMENT = "rag.ingest_document"
