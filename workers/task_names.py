"""Task names, shared by producers (the API) and the worker, so neither imports the other."""

INGEST_DOCUMENT = "rag.ingest_document"
MIGRATION_PLAN = "rag.migration.plan"
MIGRATION_BATCH = "rag.migration.batch"
MIGRATION_FINALIZE = "rag.migration.finalize"
