"""The Celery app. Redis is broker (and optional result backend) in deployment.

With no broker configured (the embedded default) the same tasks run on an in-process worker
thread through `Task.apply` (see workers/embedded.py); the broker URL below is then never used.
This module imports no task, queue or context: the worker imports the tasks (`include`), and
with them workers/context.py, whose hooks load the model after the fork and resume migrations.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_ready

from core.settings import Settings, get_settings
from workers import request_ids  # noqa: F401  (connects the request-id signal handlers)

log = logging.getLogger(__name__)


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


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Our log format (JSON in deployment, with the request id) instead of Celery's."""
    from core.log_config import configure_logging

    configure_logging(get_settings().log)


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    """In the worker's main process, before the fork: serve /metrics for all its processes.

    The pool's children count ingestion; only prometheus_client's multiprocess mode
    (PROMETHEUS_MULTIPROC_DIR, set in the image) lets this process report their values.
    """
    port = get_settings().metrics.worker_port
    if not port:
        return
    from prometheus_client import start_http_server

    from core.metrics import registry

    start_http_server(port, registry=registry())


@worker_ready.connect
def _report_metrics(**_: Any) -> None:
    # Logged here, not in worker_init: Celery sets up logging between the two signals.
    from core.prometheus_dir import multiprocess_dir

    port = get_settings().metrics.worker_port
    if port:
        log.info("worker metrics on port %d", port)
        if multiprocess_dir() is None:
            log.warning("PROMETHEUS_MULTIPROC_DIR is not set: pool processes are not counted")
