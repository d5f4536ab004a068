"""The background jobs of a worker process that are not messages: retention's purge and the re-seal of records
under the current data key. Each is a supervised loop of its own (kinds ``retention`` and ``reseal``), off the
hot path: it works in small batches, one short transaction each, and sleeps between rounds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from hub import retention, sealing
from hub.blobs import BlobStore
from hub.settings import Settings
from hub.supervisor import Heartbeats, Supervisor

__all__ = ["BatchLoop", "housekeeping_loops"]

log = logging.getLogger(__name__)


class BatchLoop:
    """Calls ``batch`` (which returns ``(items done, more waiting)``) until nothing more waits, then sleeps
    ``interval`` seconds; a failing batch is counted on the supervisor and tried again next round."""

    def __init__(self, kind: str, batch: Callable[[], tuple[int, bool]], interval: float, engine: Engine,
                 stop: threading.Event | None = None) -> None:
        self.batch, self.interval = batch, interval
        self.stop = stop or threading.Event()
        self.supervisor = Supervisor(kind, stop=self.stop, interval=interval, heartbeats=Heartbeats(engine))

    def start(self) -> None:
        self.supervisor.start(self._run)

    def shutdown(self) -> None:
        self.stop.set()
        self.supervisor.join(timeout=30)

    def run_once(self) -> int:
        """One round: batches until nothing more waits (or the loop is stopped). Returns the items done."""
        done = 0
        while not self.stop.is_set():
            try:
                items, more = self.batch()
            except Exception as exc:  # a database hiccup, a damaged record: counted, the next round tries again
                log.warning("%s: batch failed: %s", self.supervisor.name, self.supervisor.failed(exc))
                return done
            done += items
            self.supervisor.beat(success=True, items=items)
            if not more or not items:
                return done
        return done

    def _run(self) -> None:
        while not self.stop.is_set():
            self.run_once()
            self.stop.wait(self.interval)


def housekeeping_loops(config: Settings, engine: Engine) -> list[BatchLoop]:
    """The loops a worker process runs beside its worker: the purge when retention is configured, the re-seal
    when the engine has a keyring. Started and stopped by the composition root."""
    loops: list[BatchLoop] = []
    blobs = BlobStore(config.storage.blob_dir)
    policy = retention.Policy(config.retention)
    if policy.active:
        def purge() -> tuple[int, bool]:
            report = retention.purge_batch(engine, policy, blobs, limit=config.retention.batch_size)
            return report.total, report.remaining

        loops.append(BatchLoop("retention", purge, config.retention.interval_seconds, engine))
    if sealing.keyring_of(engine) is not None:
        def reseal() -> tuple[int, bool]:
            report = sealing.rewrap_batch(engine, config.storage.blob_dir)
            return report.resealed + report.blobs, report.remaining

        loops.append(BatchLoop("reseal", reseal, config.storage.rewrap_interval_seconds, engine))
    return loops
