"""`Database.read` on Postgres: autocommit reads without the pool's ping, and a connection
that died under the pool is replaced and the read run again."""

from __future__ import annotations

from sqlalchemy import text

from core.db import Database
from core.settings import Settings


def backend_pid(db: Database) -> int:
    return int(db.read(lambda session: session.execute(text("SELECT pg_backend_pid()")).scalar()))


def test_read_needs_no_transaction_and_survives_a_killed_connection(pg_settings: Settings) -> None:
    db = Database(pg_settings)
    try:
        # Autocommit: each statement outside any transaction, so no BEGIN/COMMIT round trips.
        # Two statements of one read run in two transactions (one would give one id twice).
        ids = db.read(
            lambda session: [
                session.execute(text("SELECT pg_current_xact_id()::text")).scalar()
                for _ in range(2)
            ]
        )
        assert ids[0] != ids[1]
        first = backend_pid(db)
        assert backend_pid(db) == first  # the pooled connection is reused
        with db.engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({first}, 5000)")
        # The pooled connection is dead; without a ping the read finds out, drops it and retries.
        assert backend_pid(db) != first
    finally:
        db.dispose()
