"""Task names, shared by producers (the API) and the worker, so neither imports the other."""

INGEST_DOCUMENT = "rag.ingest_document"
# Several documents of an upload in one task: one encoder call, one transaction.
INGEST_DOCUMENTS = "rag.ingest_documents"
INGEST_TASKS = frozenset({INGEST_DOCUMENT, INGEST_DOCUMENTS})
MIGRATION_PLAN = "rag.migration.plan"
MIGRATION_BATCH = "rag.migration.batch"
MIGRATION_FINALIZE = "rag.migration.finalize"
