"""The long-lived objects of an API process, built once in the lifespan."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from core import repository
from core.collection_state import CollectionStates
from core.db import Database
from core.migrate import upgrade
from core.settings import Settings
from generation.critic import shipped_critic
from generation.llm.factory import make_generator
from generation.llm.generator import Generator, UnavailableGenerator
from generation.llm.lora_adapters import AdapterRegistry
from generation.query_cache import QueryCache, make_cache
from generation.query_service import QueryService
from generation.reasoning.pipeline import SelfReasoningPipeline
from generation.reasoning.verification import StoredTexts
from retrieval.bm25_store import Bm25Store
from retrieval.embedders import EmbedderPool
from retrieval.index_store import IndexStore
from retrieval.row_snapshots import ChunkRowSnapshots
from retrieval.search import Searcher
from workers.embedded import make_queue
from workers.queue import TaskQueue, requeue_unfinished

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    embedders: EmbedderPool
    indexes: IndexStore
    searcher: Searcher
    queue: TaskQueue
    generator: Generator
    cache: QueryCache
    queries: QueryService
    # BM25 indexes per collection (the lexical half of hybrid retrieval).
    lexical: Bm25Store
    # LoRA adapters: registrations and bundled folders, loaded into the generator on use.
    adapters: AdapterRegistry
    _stop: threading.Event = field(default_factory=threading.Event)
    _snapshots: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        settings: Settings,
        embedders: EmbedderPool | None = None,
        generator: Generator | None = None,
    ) -> Services:
        """Build everything; tests may pass an already loaded embedder pool or generator."""
        db = Database(settings)
        if settings.database.auto_migrate:
            upgrade(settings)
        embedders = embedders or EmbedderPool(settings.embedder)
        # Load the models now, not on the first request.
        default_embedder = embedders.default_id()
        embedders.get(default_embedder)
        embedders.for_queries(default_embedder)
        indexes = IndexStore(db, settings.index, settings.index_dir)
        lexical = Bm25Store(db, settings.retrieval.bm25, settings.index_dir / "bm25")
        # A deleted collection's BM25 index and snapshot go with its FAISS ones.
        indexes.on_collection_deleted(lexical.drop)
        states = CollectionStates(
            db, enabled=settings.database.state_cache, ping_s=settings.database.state_cache_ping_s
        )
        rows = ChunkRowSnapshots(db, settings.retrieval.snapshot_rows)
        indexes.on_collection_deleted(rows.drop)
        searcher = Searcher(
            db, embedders, indexes, lexical, settings.index, settings.retrieval, states, rows
        )
        # Embedded, the in-process worker threads share this process's database and loaded model.
        queue = make_queue(settings, db, embedders)
        generator = generator or start_generator(settings)
        cache = make_cache(settings.redis.url, settings.cache)
        pipeline = SelfReasoningPipeline(
            generator, searcher, StoredTexts(db), settings.generation.pipeline, shipped_critic()
        )
        adapters = AdapterRegistry(db, generator, settings.generation.adapters_dir)
        queries = QueryService(pipeline, cache, states, settings.generation.pipeline, adapters)
        services = cls(
            settings,
            db,
            embedders,
            indexes,
            searcher,
            queue,
            generator,
            cache,
            queries,
            lexical,
            adapters,
        )
        if settings.embedded_worker:
            requeue_unfinished(db, queue)
        services._snapshots = threading.Thread(
            target=services._snapshot_loop, name="rag-snapshots", daemon=True
        )
        services._snapshots.start()
        return services

    def _snapshot_loop(self) -> None:
        """Warm every collection's index; then, periodically, keep embedder-migration targets
        warm and write snapshots of changed indexes."""
        try:
            self.warm_indexes()
        except Exception:
            log.exception("warming indexes failed; they load on first search instead")
        interval = self.settings.index.snapshot_interval_s
        next_snapshot = time.monotonic() + interval
        while not self._stop.wait(min(interval, self.settings.index.warm_interval_s)):
            try:
                self.warm_migration_targets()
            except Exception:
                log.exception("warming embedder-migration targets failed")
            if time.monotonic() >= next_snapshot:
                next_snapshot = time.monotonic() + interval
                for store in (self.indexes, self.lexical):
                    try:
                        store.save_snapshots()
                    except Exception:
                        log.exception("writing index snapshots failed")

    def warm_indexes(self) -> None:
        with self.db.session() as session:
            active = [
                (c.id, c.embedder, c.index_version, c.retrieval or self.settings.retrieval.default)
                for c in repository.list_collections(session)
            ]
        for collection_id, embedder, version, retrieval in active:
            self.indexes.get(collection_id, embedder, version)
            if retrieval != "dense":
                self.lexical.get(collection_id, version)

    def warm_migration_targets(self) -> None:
        """Load each running migration's embedder and keep its index caught up, so the switch
        costs a search only a small diff; forget indexes no collection serves any more."""
        with self.db.session() as session:
            # Migrations first: a switch committed between the two reads then shows up as
            # the new active embedder, and its warm index is kept.
            targets = {(c, e) for _, c, e in repository.active_migrations(session)}
            active = {(c.id, c.embedder) for c in repository.list_collections(session)}
        for collection_id, embedder in targets:
            try:
                self.embedders.get(embedder)
                self.embedders.for_queries(embedder)
                self.indexes.refresh(collection_id, embedder)
            except Exception:
                log.exception("warming %s for collection %s failed", embedder, collection_id)
        self.indexes.retain(active | targets)
        collections = {collection_id for collection_id, _ in active}
        self.lexical.retain(collections)
        if self.searcher.rows is not None:
            self.searcher.rows.retain(collections)

    async def aclose(self) -> None:
        await self.generator.aclose()
        await self.cache.aclose()
        self.close()

    def close(self) -> None:
        self._stop.set()
        self.queue.close()
        if self._snapshots is not None:
            self._snapshots.join(timeout=30)
        self.indexes.save_snapshots()
        self.lexical.save_snapshots()
        self.cache.close()
        self.searcher.states.close()
        self.searcher.close()
        self.db.dispose()


def start_generator(settings: Settings) -> Generator:
    """The configured generator, or a stand-in that answers 503 with the reason it failed."""
    config = settings.generation
    name = config.openai.model if config.backend == "openai" else config.llamacpp.model_name
    try:
        return make_generator(config)
    except Exception as exc:
        log.error("the %s generator could not start: %s", config.backend, exc)
        return UnavailableGenerator(name or config.backend, f"the generator could not start: {exc}")
