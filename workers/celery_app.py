"""The Celery app. Redis is broker (and optional result backend) in deployment.

With no broker configured (the embedded default) the same tasks run on an in-process worker
thread through `Task.apply` (see workers/queue.py); the broker URL below is then never used.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from core.settings import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("rag", include=["workers.tasks.ingest"], set_as_current=False)
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
        # Unacknowledged tasks are swept back every 10 s (kombu's default throttle makes it 100 s)
        # once they are older than the visibility timeout: one cheap sorted-set query per sweep.
        broker_transport_options={
            "visibility_timeout": settings.broker.visibility_timeout_s,
            "unacked_restore_throttle": 1,
        },
        worker_hijack_root_logger=False,
        # A pool child loads the embedder in worker_process_init before it reports "up"; on a
        # busy CPU that takes longer than Celery's 4 s default, and a replacement child (after
        # one was killed) was then killed and replaced forever, so its task never ran again.
        worker_proc_alive_timeout=120,
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
