"""The FIT-Connect channel's intake: fetch submissions into the store.

Intake (:meth:`Intake.poll_once`, run by the :class:`Poller` thread and ``xhub fitconnect poll``):

1. list the submissions waiting at each configured destination (paging);
2. skip those already stored (the submission id is the message's ``external_id``, unique per channel in
   the store, so any number of pollers can run);
3. fetch, decrypt and verify one (the library streams attachments to files next to the blob store);
4. **store it and commit** (payload = the data, then the metadata, then the attachments in the blob store).
   Only after that can anybody answer the sender;
5. a submission that can never be processed (undecryptable, hash mismatch, invalid metadata, …) is stored
   too, as a record carrying its problems; the pipeline rejects it like any invalid message, so the
   reject-submission token goes out from one place, with retries.

Transient trouble (network, 5xx, 429) is retried on the next poll and never turned into a reject.

Each submission is taken in isolation: whatever one submission raises (a transient error, a bug, a
``RecursionError`` or ``MemoryError`` on an input nobody foresaw), it is counted in ``intake_failures``
(:mod:`hub.intake_failures`, channel ``fitconnect``) and the poll goes on with the next one. After
``fitconnect.max_intake_failures`` unexpected failures the submission is stored as refused with
``technical-error``; transient ones are counted and shown in ``/health/ready``, never held against the sender.
The :class:`Poller` runs under a :class:`~hub.supervisor.Supervisor`: a poll that dies anyway is restarted
with backoff, counted, and visible in the health report.

Answering back is :class:`channels.fitconnect.channel.FitConnectChannel`, which the pipeline asks.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from channels.fitconnect import reject_reasons
from channels.fitconnect.client import SubscriberClient
from channels.fitconnect.config import DestinationConfig, FitConnectConfig
from channels.fitconnect.models import AuthTags, Submission, SubmissionRef
from channels.fitconnect.reject_reasons import EventProblem, SubmissionRejected
from hub import metrics, store, tracing
from hub.blobs import BlobStore
from hub.errors import Deferred, HubError
from hub.intake_failures import IntakeFailures, is_transient
from hub.models import Message
from hub.settings import LimitsConfig, Settings
from hub.supervisor import Heartbeats, Supervisor, describe

__all__ = ["CHANNEL", "POLLER", "Intake", "PollReport", "Poller", "subscriber_client"]

log = logging.getLogger(__name__)

CHANNEL = "fitconnect"  # the messages' channel
SENDER = "fitconnect"
POLLER = "fitconnect-poller"  # the poller loop's kind (heartbeats, /health/ready)


def subscriber_client(fc: FitConnectConfig, limits: LimitsConfig) -> SubscriberClient:
    """The subscriber library configured with the hub's limits (``[limits]``) for what it parses."""
    return SubscriberClient(fc, json_limits=limits.json_limits(fc.max_data_bytes), xml_max_depth=limits.xml_max_depth)


_TYPE_SUBTYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,60}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,30}$")
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def part_name(filename: str | None) -> str | None:
    """The sender's file name as data (never a path): printable, at most 255 characters."""
    if filename is None:
        return None
    cleaned = _UNPRINTABLE.sub("\ufffd", filename)
    return cleaned[:255] or None


def part_type(mime_type: str) -> str:
    """The sender's MIME type if it is a plain ``type/subtype`` that fits the column, else octet-stream."""
    return mime_type.lower() if _TYPE_SUBTYPE.match(mime_type) else "application/octet-stream"


@dataclass
class PollReport:
    stored: int = 0
    refused: int = 0  # stored as records to be rejected
    known: int = 0
    failed: int = 0  # retried next time (counted in intake_failures)
    listed: bool = True  # every destination's listing was read: the poll reached the delivery service


class Intake:
    """Takes the submissions waiting at every configured destination into the store."""

    def __init__(self, fc: FitConnectConfig, config: Settings, engine: Engine,
                 client: SubscriberClient | None = None) -> None:
        self.fc = fc
        self.config = config
        self.engine = engine
        self.client = client or subscriber_client(fc, config.limits)
        self.blobs = BlobStore(config.storage.blob_dir)
        self.incoming = config.storage.blob_dir / ".incoming"  # same file system: attachments are moved, not copied
        self.failures = IntakeFailures(engine, CHANNEL)

    def close(self) -> None:
        self.client.close()

    # -- intake
    def poll_once(self, loop: Supervisor | None = None) -> PollReport:
        """Take in what waits at every destination. Never raises for one submission; ``loop`` (the poller's
        supervisor) hears of every submission taken in and of every failure."""
        report = PollReport()
        for destination in self.fc.destinations:
            try:
                refs = list(self.client.pending(destination.id))
            except Exception as exc:  # this destination's listing only: the others are still polled
                report.failed += 1
                report.listed = False
                what = loop.failed(exc) if loop is not None else describe(exc)
                log.warning("FIT-Connect: listing destination %s failed, trying again on the next poll: %s",
                            destination.id, exc if isinstance(exc, HubError) else what)
                continue
            for ref in refs:
                self._take(ref, destination, report, loop)
        metrics.record_poll(CHANNEL, ok=report.listed)
        metrics.record_polled(CHANNEL, stored=report.stored, refused=report.refused, known=report.known,
                              failed=report.failed)
        return report

    def _take(self, ref: SubmissionRef, destination: DestinationConfig, report: PollReport,
              loop: Supervisor | None) -> None:
        """One submission, in isolation: any exception is counted for it, and the poll goes on."""
        try:
            if self._known(ref.submission_id):
                report.known += 1
                return
            failures = self.failures.get(ref.submission_id)
            if failures is not None and failures.unexpected >= self.fc.max_intake_failures:
                self._give_up(ref, destination, failures.unexpected, failures.last_error)
                report.refused += 1
            elif self._fetch_and_store(ref, destination):
                report.stored += 1
            else:
                report.refused += 1
            if loop is not None:
                loop.beat(success=True, items=1)
        except Exception as exc:  # one submission's failure must not stop the others: counted, shown, retried
            self._failed(ref, destination, exc, report, loop)

    def _failed(self, ref: SubmissionRef, destination: DestinationConfig, exc: Exception, report: PollReport,
                loop: Supervisor | None) -> None:
        report.failed += 1
        what = loop.failed(exc) if loop is not None else describe(exc)
        if isinstance(exc, Deferred):  # nothing was sent: not an attempt
            log.info("FIT-Connect: submission %s deferred: %s", ref.submission_id, exc)
            return
        transient = is_transient(exc)
        if transient:
            log.warning("FIT-Connect: submission %s not taken in, will retry: %s", ref.submission_id,
                        exc if isinstance(exc, HubError) else what)
        else:
            log.error("FIT-Connect: submission %s failed unexpectedly (%s)", ref.submission_id, what)
            log.debug("FIT-Connect: submission %s failed", ref.submission_id, exc_info=exc)
        try:
            unexpected = self.failures.record(ref.submission_id, case_id=ref.case_id, source=ref.destination_id,
                                              what=what, unexpected=not transient)
            if unexpected >= self.fc.max_intake_failures:
                self._give_up(ref, destination, unexpected, what)
                report.failed -= 1
                report.refused += 1
        except SQLAlchemyError as not_counted:  # the database: the next poll counts (or refuses) again
            log.warning("FIT-Connect: failure of submission %s not recorded: %s", ref.submission_id,
                        describe(not_counted))

    def _fetch_and_store(self, ref: SubmissionRef, destination: DestinationConfig) -> bool:
        """True when stored as a submission, False when stored as refused."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.incoming) as tmp:
            try:
                submission = self.client.fetch(ref, Path(tmp))
            except SubmissionRejected as exc:
                self._store_refused(ref, destination, exc.problems)
                return False
            self._store(submission, destination)
            return True

    def _give_up(self, ref: SubmissionRef, destination: DestinationConfig, attempts: int, last_error: str) -> None:
        """Store the submission as refused (technical-error) after ``attempts`` unexpected failures."""
        problem = reject_reasons.technical_error(
            f"Die Einreichung konnte nach {attempts} Versuchen technisch nicht verarbeitet werden.")
        self._store_refused(ref, destination, [problem], {"intake_failures": attempts, "last_error": last_error})
        log.error("FIT-Connect: submission %s refused after %d unexpected failures (last: %s)", ref.submission_id,
                  attempts, last_error)

    def _known(self, submission_id: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(select(Message.id).where(Message.channel == CHANNEL,
                                                          Message.external_id == submission_id)).first()
        return found is not None

    def _store(self, submission: Submission, destination: DestinationConfig) -> None:
        parts = [
            store.Part("payload", submission.data_mime_type, submission.data),
            store.Part("metadata", "application/json", json.dumps(submission.metadata).encode()),
            *(store.Part("attachment", part_type(a.mime_type), file=a.path, name=part_name(a.filename))
              for a in submission.attachments),
        ]
        self._accept(submission.submission_id, submission.case_id, destination, parts, {
            "service": submission.service_identifier,
            "fitconnect": _answer_facts(submission.submission_id, submission.case_id, destination.id,
                                        submission.auth_tags),
        })
        self.failures.forget(submission.submission_id)
        log.info("FIT-Connect: stored submission %s (case %s)", submission.submission_id, submission.case_id)

    def _store_refused(self, ref: SubmissionRef, destination: DestinationConfig, problems: list[EventProblem],
                       intake: dict[str, Any] | None = None) -> None:
        record = {"submissionId": ref.submission_id, "caseId": ref.case_id, "destinationId": ref.destination_id,
                  "problems": [p.as_json() for p in problems]}
        facts = {**_answer_facts(ref.submission_id, ref.case_id, destination.id, None),
                 "refused": [p.as_json() for p in problems]}
        self._accept(ref.submission_id, ref.case_id, destination,
                     [store.Part("payload", "application/json", json.dumps(record).encode())],
                     {"fitconnect": {**facts, **(intake or {})}})
        self.failures.forget(ref.submission_id)
        log.warning("FIT-Connect: submission %s cannot be processed (%s); stored for rejection",
                    ref.submission_id, "; ".join(p.title for p in problems))

    def _accept(self, submission_id: str, case_id: str, destination: DestinationConfig, parts: list[store.Part],
                attributes: dict[str, Any]) -> None:
        try:
            with tracing.span("intake", channel=CHANNEL, tenant=destination.tenant) as trace:
                new = store.NewMessage(
                    tenant=destination.tenant, channel=CHANNEL, sender=SENDER, parts=parts,
                    external_id=submission_id, case_id=case_id,
                    attributes={"destination": destination.id, **attributes, **trace},
                )
                store.accept(self.engine, new, actor=f"{CHANNEL}:{destination.id}", blobs=self.blobs)
        except store.ExternalIdKnown:
            log.info("FIT-Connect: submission %s was stored by another poller meanwhile", submission_id)
            return
        metrics.record_status("received", tenant=destination.tenant, channel=CHANNEL, route=None)


def _answer_facts(submission_id: str, case_id: str, destination_id: str, tags: AuthTags | None) -> dict[str, Any]:
    return {"submission_id": submission_id, "case_id": case_id, "destination_id": destination_id,
            "auth_tags": None if tags is None else {"metadata": tags.metadata, "data": tags.data,
                                                    "attachments": dict(tags.attachments)}}


class Poller:
    """Polls every ``interval`` seconds, or at once when a callback wakes it. Polling is the source of truth.

    The loop runs under :attr:`supervisor` (kind ``fitconnect-poller``): a poll that reached the delivery
    service, and every submission taken in, counts as success for ``/health/ready``."""

    def __init__(self, intake: Intake, interval: float) -> None:
        self.intake, self.interval = intake, interval
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.supervisor = Supervisor(POLLER, stop=self.stop, interval=interval, heartbeats=Heartbeats(intake.engine))

    def start(self) -> None:
        self.supervisor.start(self._run)

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
        self.supervisor.join(timeout=60)
        self.intake.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            report = self.intake.poll_once(self.supervisor)
            self.supervisor.beat(success=report.listed)
            if report.stored or report.refused or report.failed:
                log.info("FIT-Connect poll: %s", report)
            self.wake.wait(self.interval)
            self.wake.clear()
