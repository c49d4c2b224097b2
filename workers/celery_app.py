"""The Celery app. Redis is broker (and optional result backend) in deployment.

With no broker configured (the embedded default) the same tasks run on an in-process worker
thread through `Task.apply` (see workers/queue.py); the broker URL below is then never used.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from core.settings import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    app = Celery(
        "rag", include=["workers.tasks.ingest", "workers.tasks.migration"], set_as_current=False
    )
    app.conf.update(
        broker_url=settings.broker.url or "memory://",
        result_backend=settings.broker.result_backend or None,
        task_ignore_result=not settings.broker.result_backend,
        task_serializer="json",
        accept_content=["json"],
        # A task is acknowledged only after it ran, and a worker killed mid-task gives it back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=settings.broker.worker_prefetch,
        worker_concurrency=settings.broker.worker_concurrency,
        task_default_queue="rag",
        broker_connection_retry_on_startup=True,
        # Redis re-delivers unacknowledged tasks after this long (a worker died holding them).
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        # Publishing fails fast instead of blocking a request while the broker is down.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    )
    return app


celery_app = make_celery(get_settings())


@worker_process_init.connect
def _warm_up(**_: Any) -> None:
    """Load the model in each worker child after the fork, before the first task arrives."""
    from workers.context import get_context

    context = get_context()
    context.embedders.get(context.settings.embedder.default)


@worker_ready.connect
def _resume_migrations(**_: Any) -> None:
    """Resume embedder migrations whose tasks a killed worker may have taken with it.

    Redis gives a dead worker's unacknowledged tasks back only after the visibility timeout;
    planning again re-enqueues just the batches whose chunks still lack a vector.
    """
    from core import repository
    from core.db import Database
    from workers.queue import CeleryQueue, resume_migrations

    settings = get_settings()
    db = Database(settings)
    queue = CeleryQueue(settings)
    try:
        with db.session() as session:
            jobs = [job_id for job_id, _, _ in repository.active_migrations(session)]
        resume_migrations(queue, jobs)
    finally:
        queue.close()
        db.dispose()
