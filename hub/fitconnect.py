"""The FIT-Connect channel: fetch submissions into the store, and answer back with signed event tokens.

Intake (:meth:`FitConnectChannel.poll_once`, run by the poller thread and ``xhub fitconnect poll``):

1. list the submissions waiting at each configured destination (paging);
2. skip those already stored (the submission id is unique in the store, so any number of pollers can run);
3. fetch, decrypt and verify one (the library streams attachments to files next to the blob store);
4. **store it and commit** (payload = the data, then the metadata, then the attachments in the blob store).
   Only after that can anybody answer the sender;
5. a submission that can never be processed (undecryptable, hash mismatch, invalid metadata, …) is stored
   too, as a record carrying its problems; the pipeline rejects it like any invalid message, so the
   reject-submission token goes out from one place, with retries.

Transient trouble (network, 5xx, 429) is retried on the next poll and never turned into a reject.

Answering back (:class:`AnswerBack`, used by the pipeline): ``accept-submission`` with the authentication
tags once the message is delivered (or validated, per route), ``reject-submission`` with problem types
when it is rejected. Both are idempotent in the library (the case's event log is read first).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from adapters.fitconnect import (
    AuthTags,
    DestinationConfig,
    EventProblem,
    Submission,
    SubmissionRef,
    SubmissionRejected,
    SubscriberClient,
)
from adapters.fitconnect import problems as problems_module
from hub import store
from hub.blobs import BlobStore
from hub.config import HubConfig
from hub.errors import HubError
from hub.models import Message

__all__ = ["CHANNEL", "FitConnectChannel", "PollReport", "Poller"]

log = logging.getLogger(__name__)

CHANNEL = "fitconnect"
SENDER = "fitconnect"


@dataclass
class PollReport:
    stored: int = 0
    refused: int = 0  # stored as records to be rejected
    known: int = 0
    failed: int = 0  # transient: retried next time


class FitConnectChannel:
    def __init__(self, config: HubConfig, engine: Engine, client: SubscriberClient | None = None) -> None:
        if config.fitconnect is None:
            raise ValueError("the FIT-Connect channel needs a [fitconnect] section in the configuration")
        self.config = config
        self.fc = config.fitconnect
        self.engine = engine
        self.client = client or SubscriberClient(self.fc)
        self.blobs = BlobStore(config.storage.blob_dir)
        self.incoming = config.storage.blob_dir / ".incoming"  # same file system: attachments are moved, not copied

    def close(self) -> None:
        self.client.close()

    # -- intake
    def poll_once(self) -> PollReport:
        report = PollReport()
        for destination in self.fc.destinations:
            try:
                for ref in self.client.pending(destination.id):
                    self._take(ref, destination, report)
            except HubError as exc:  # the listing itself failed: try again on the next poll
                report.failed += 1
                log.warning("FIT-Connect: listing destination %s failed: %s", destination.id, exc)
        return report

    def _take(self, ref: SubmissionRef, destination: DestinationConfig, report: PollReport) -> None:
        if self._known(ref.submission_id):
            report.known += 1
            return
        self.incoming.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.incoming) as tmp:
            try:
                submission = self.client.fetch(ref, Path(tmp))
            except SubmissionRejected as exc:
                self._store_refused(ref, destination, exc.problems)
                report.refused += 1
                return
            except HubError as exc:
                report.failed += 1
                log.warning("FIT-Connect: submission %s not fetched, will retry: %s", ref.submission_id, exc)
                return
            self._store(submission, destination)
            report.stored += 1

    def _known(self, submission_id: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(select(Message.id).where(Message.fitconnect_submission_id == submission_id)).first()
        return found is not None

    def _store(self, submission: Submission, destination: DestinationConfig) -> None:
        parts = [
            store.Part("payload", submission.data_mime_type, submission.data),
            store.Part("metadata", "application/json", json.dumps(submission.metadata).encode()),
            *(store.Part("attachment", a.mime_type, file=a.path, name=a.filename) for a in submission.attachments),
        ]
        self._accept(submission.submission_id, submission.case_id, destination, parts, {
            "service": submission.service_identifier,
            "fitconnect": _answer_facts(submission.submission_id, submission.case_id, destination.id,
                                        submission.auth_tags),
        })
        log.info("FIT-Connect: stored submission %s (case %s)", submission.submission_id, submission.case_id)

    def _store_refused(self, ref: SubmissionRef, destination: DestinationConfig, problems: list[EventProblem]) -> None:
        record = {"submissionId": ref.submission_id, "caseId": ref.case_id, "destinationId": ref.destination_id,
                  "problems": [p.as_json() for p in problems]}
        self._accept(ref.submission_id, ref.case_id, destination,
                     [store.Part("payload", "application/json", json.dumps(record).encode())], {
                         "fitconnect": {**_answer_facts(ref.submission_id, ref.case_id, destination.id, None),
                                        "refused": [p.as_json() for p in problems]},
                     })
        log.warning("FIT-Connect: submission %s cannot be processed (%s); stored for rejection",
                    ref.submission_id, "; ".join(p.title for p in problems))

    def _accept(self, submission_id: str, case_id: str, destination: DestinationConfig, parts: list[store.Part],
                attributes: dict[str, Any]) -> None:
        new = store.NewMessage(
            tenant=destination.tenant, channel=CHANNEL, sender=SENDER, parts=parts,
            external={"fitconnect_submission_id": submission_id, "fitconnect_case_id": case_id},
            attributes={"destination": destination.id, **attributes},
        )
        try:
            store.accept(self.engine, new, actor=f"{CHANNEL}:{destination.id}", blobs=self.blobs)
        except store.SubmissionKnown:
            log.info("FIT-Connect: submission %s was stored by another poller meanwhile", submission_id)


def _answer_facts(submission_id: str, case_id: str, destination_id: str, tags: AuthTags | None) -> dict[str, Any]:
    return {"submission_id": submission_id, "case_id": case_id, "destination_id": destination_id,
            "auth_tags": None if tags is None else {"metadata": tags.metadata, "data": tags.data,
                                                    "attachments": dict(tags.attachments)}}


class AnswerBack:
    """Accept or reject a FIT-Connect message (the pipeline's :class:`~hub.pipeline.base.Answerer`)."""

    def __init__(self, client: SubscriberClient) -> None:
        self.client = client

    @staticmethod
    def ref(message: Message) -> SubmissionRef:
        facts = (message.attributes or {})["fitconnect"]
        return SubmissionRef(facts["submission_id"], facts["case_id"], facts["destination_id"])

    def accept(self, message: Message) -> str:
        tags = (message.attributes or {})["fitconnect"]["auth_tags"]
        self.client.accept(self.ref(message), AuthTags(tags["metadata"], tags["data"], tags["attachments"]))
        return "accept-submission sent"

    def reject(self, message: Message, error: HubError, stage: str) -> str:
        problems = problems_for(message, error, stage)
        self.client.reject(self.ref(message), problems)
        kinds = ", ".join(p.type.removeprefix(problems_module.PROBLEM_BASE) for p in problems)
        return f"reject-submission sent ({kinds})"


def problems_for(message: Message, error: HubError, stage: str) -> list[EventProblem]:
    """The FIT-Connect problem types that say why the hub rejects this message."""
    refused = error.detail.get("fitconnect_problems")
    if refused:  # found when fetching: decryption, hashes, metadata schema (the library's own verdict)
        return [EventProblem.from_json(p) for p in refused]
    detail = str(error)
    if stage == "verify":
        return [problems_module.syntax_violation("data", detail)]
    if stage == "validate":
        return [problems_module.schema_violation("data", detail)]
    if stage == "route":  # the route takes only messages whose schema could be checked
        return [problems_module.unsupported_schema("data", detail)]
    return [problems_module.technical_error(detail)]


class Poller:
    """Polls every ``interval`` seconds, or at once when a callback wakes it. Polling is the source of truth."""

    def __init__(self, channel: FitConnectChannel, interval: float) -> None:
        self.channel, self.interval = channel, interval
        self.wake = threading.Event()
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fitconnect-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
        self._thread.join(timeout=60)
        self.channel.close()

    def _run(self) -> None:
        while not self.stop.is_set():
            report = self.channel.poll_once()
            if report.stored or report.refused or report.failed:
                log.info("FIT-Connect poll: %s", report)
            self.wake.wait(self.interval)
            self.wake.clear()
