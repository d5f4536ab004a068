"""Submissions: the sender's announce, upload and submit; the subscriber's pickup and decision; the event log.

Every status change is a guarded ``UPDATE … WHERE status = <expected>`` checked by
:func:`sandbox.fitconnect.status.check`, with its event row (a signed SET) in the same transaction.
Access rules: a sender sees only its own submissions, a subscriber only those of its destinations.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.fitconnect.callbacks import NEW_EVENTS, NEW_SUBMISSIONS, Callback
from sandbox.fitconnect.db import Database
from sandbox.fitconnect.problem_types import Problem, ProblemType
from sandbox.fitconnect.sets import (
    ACCEPT,
    CREATE,
    REJECT,
    SUBMIT,
    ServerKey,
    authentication_tag,
    verify_subscriber_set,
)
from sandbox.fitconnect.status import DECIDABLE, IllegalTransition, Status, check

if TYPE_CHECKING:
    from sandbox.fitconnect.emulator import Client, Destination

__all__ = ["Submissions"]

_P = ProblemType


def _forbid(detail: str) -> Problem:
    return Problem(_P.FORBIDDEN, detail)


def page(total: int, offset: int, items: list[Any], key: str) -> dict[str, Any]:
    return {"count": len(items), "offset": offset, "totalCount": total, key: items}


class Submissions:
    """The submission flows over the emulator's database; every method checks the client's role and rights first
    and raises a :class:`~sandbox.fitconnect.problem_types.Problem` on refusal."""

    def __init__(self, db: Database, attachments_dir: Path, server_key: ServerKey,
                 destination: Callable[[str], Destination | None]) -> None:
        self._db = db
        self._dir = attachments_dir
        self._key = server_key
        self._destination = destination

    # -- sender ----------------------------------------------------------------------------------------------

    def announce(self, client: Client, *, destination_id: str, announced: Sequence[str], service_identifier: str,
                 service_type: dict[str, Any], case_id: str | None, callback: tuple[str, str] | None,
                 issuer: str) -> dict[str, str]:
        if client.role != "sender":
            raise _forbid("only a sender may create submissions")
        dest = self._destination(destination_id)
        if dest is None:
            raise Problem(_P.DESTINATION_NOT_FOUND, f"destination {destination_id} does not exist")
        if destination_id not in client.destinations:
            raise _forbid(f"this client may not send to destination {destination_id}")
        if dest.status != "active":
            raise Problem(_P.DESTINATION_STATE_INVALID, f"destination {destination_id} is {dest.status}")
        if service_identifier not in {s["identifier"] for s in dest.services}:
            raise Problem(_P.SERVICE_TYPE_NOT_SUPPORTED,
                          f"destination {destination_id} does not offer {service_identifier}")
        submission_id = str(uuid.uuid4())
        with self._db.transaction() as conn:
            if case_id is not None and conn.execute(
                    "SELECT 1 FROM submissions WHERE case_id = ?", (case_id,)).fetchone() is None:
                raise Problem(_P.CASE_NOT_FOUND, f"case {case_id} does not exist")
            case_id = case_id or str(uuid.uuid4())
            url, secret = callback or (None, None)
            # duplicates are folded: the public SDK announces the same id once per attachment
            conn.execute("INSERT INTO submissions (submission_id, case_id, destination_id, sender_client_id, status,"
                         " service_type, announced, callback_url, callback_secret, created_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (submission_id, case_id, destination_id, client.client_id, Status.INCOMPLETE,
                          json.dumps(service_type), json.dumps(list(dict.fromkeys(announced))), url, secret,
                          time.time()))
            self._log(conn, issuer, CREATE, submission_id, case_id)
        return {"destinationId": destination_id, "submissionId": submission_id, "caseId": case_id}

    def _own(self, conn: sqlite3.Connection, client: Client, submission_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute("SELECT * FROM submissions WHERE submission_id = ?",
                                               (submission_id,)).fetchone()
        if row is None:
            raise Problem(_P.SUBMISSION_NOT_FOUND, f"submission {submission_id} does not exist")
        if client.role != "sender" or row["sender_client_id"] != client.client_id:
            raise _forbid(f"submission {submission_id} was not created by this client")
        return row

    def check_upload(self, client: Client, submission_id: str, attachment_id: str) -> None:
        """Refuse an upload before its body is read."""
        with self._db.read() as conn:
            self._check_upload(conn, client, submission_id, attachment_id)

    def _check_upload(self, conn: sqlite3.Connection, client: Client, submission_id: str, attachment_id: str) -> None:
        row = self._own(conn, client, submission_id)
        if row["status"] != Status.INCOMPLETE:
            raise Problem(_P.SUBMISSION_STATE_INVALID, f"submission {submission_id} is {row['status']}")
        if attachment_id not in json.loads(row["announced"]):
            raise Problem(_P.ATTACHMENT_NOT_ANNOUNCED, f"attachment {attachment_id} was not announced")

    def upload_file(self) -> Path:
        """A fresh temporary file name for an upload in progress (same file system as the attachments)."""
        return self._dir / f".upload-{uuid.uuid4()}"

    def store_attachment(self, client: Client, submission_id: str, attachment_id: str, upload: Path,
                         size: int, tag: str) -> None:
        """Move a complete upload into place; a repeated upload replaces the earlier one."""
        name = f"{submission_id}.{attachment_id}.jwe"
        with self._db.transaction() as conn:
            self._check_upload(conn, client, submission_id, attachment_id)
            os.replace(upload, self._dir / name)
            conn.execute("INSERT OR REPLACE INTO attachments VALUES (?, ?, ?, ?, ?, ?)",
                         (submission_id, attachment_id, name, size, tag, time.time()))

    def submit(self, client: Client, submission_id: str, *, encrypted_metadata: str, encrypted_data: str | None,
               issuer: str) -> tuple[dict[str, Any], Callback | None]:
        with self._db.transaction() as conn:
            row = self._own(conn, client, submission_id)
            self._transition(conn, row, Status.SUBMITTED, _P.SUBMISSION_STATE_INVALID)
            uploaded = {r["attachment_id"]: r["auth_tag"] for r in conn.execute(
                "SELECT attachment_id, auth_tag FROM attachments WHERE submission_id = ?", (submission_id,))}
            announced = json.loads(row["announced"])
            missing = [a for a in announced if a not in uploaded]
            if missing:
                raise Problem(_P.MISSING_ATTACHMENTS, f"announced attachments not uploaded: {', '.join(missing)}")
            conn.execute("UPDATE submissions SET encrypted_metadata = ?, encrypted_data = ?, submitted_at = ?"
                         " WHERE submission_id = ?", (encrypted_metadata, encrypted_data, time.time(), submission_id))
            tags: dict[str, Any] = {"metadata": authentication_tag(encrypted_metadata),
                                    "attachments": {a: uploaded[a] for a in announced}}
            if encrypted_data is not None:
                tags["data"] = authentication_tag(encrypted_data)
            self._log(conn, issuer, SUBMIT, submission_id, row["case_id"], {"authenticationTags": tags})
        dest = self._destination(row["destination_id"])
        callback = None
        if dest is not None and dest.callback_url and dest.callback_secret:
            callback = Callback(dest.callback_url, dest.callback_secret, NEW_SUBMISSIONS,
                                [(row["destination_id"], submission_id, row["case_id"])])
        return self._reduced(row, announced), callback

    # -- subscriber ------------------------------------------------------------------------------------------

    def pickup(self, client: Client, destination_id: str | None, limit: int, offset: int) -> dict[str, Any]:
        if client.role != "subscriber":
            raise _forbid("only a subscriber may list submissions for pickup")
        if destination_id is not None and destination_id not in client.destinations:
            raise _forbid(f"this client does not subscribe to destination {destination_id}")
        wanted = sorted([destination_id] if destination_id else client.destinations)
        marks = ",".join("?" * len(wanted))
        where = f"FROM submissions WHERE status = ? AND destination_id IN ({marks})"
        with self._db.read() as conn:
            total = conn.execute(f"SELECT count(*) {where}", (Status.SUBMITTED, *wanted)).fetchone()[0]
            rows = conn.execute(f"SELECT destination_id, submission_id, case_id {where}"
                                " ORDER BY submitted_at, submission_id LIMIT ? OFFSET ?",
                                (Status.SUBMITTED, *wanted, limit, offset)).fetchall()
        items = [{"destinationId": r["destination_id"], "submissionId": r["submission_id"], "caseId": r["case_id"]}
                 for r in rows]
        return page(total, offset, items, "submissions")

    def _readable(self, conn: sqlite3.Connection, client: Client, submission_id: str) -> sqlite3.Row:
        if client.role != "subscriber":
            raise _forbid("only a subscriber may fetch submissions")
        row: sqlite3.Row | None = conn.execute("SELECT * FROM submissions WHERE submission_id = ?",
                                               (submission_id,)).fetchone()
        if row is None:
            raise Problem(_P.SUBMISSION_NOT_FOUND, f"submission {submission_id} does not exist")
        if row["destination_id"] not in client.destinations:
            raise _forbid(f"submission {submission_id} is not for a destination of this client")
        if Status(row["status"]) not in DECIDABLE:
            raise Problem(_P.SUBMISSION_NOT_FOUND, f"submission {submission_id} is {row['status']}, "
                                                   "not submitted or forwarded")
        return row

    def fetch(self, client: Client, submission_id: str) -> dict[str, Any]:
        with self._db.read() as conn:
            row = self._readable(conn, client, submission_id)
            uploaded = {r["attachment_id"] for r in conn.execute(
                "SELECT attachment_id FROM attachments WHERE submission_id = ?", (submission_id,))}
        body = self._reduced(row, [a for a in json.loads(row["announced"]) if a in uploaded])
        body["encryptedMetadata"] = row["encrypted_metadata"]
        if row["encrypted_data"] is not None:
            body["encryptedData"] = row["encrypted_data"]
        return body

    def attachment(self, client: Client, submission_id: str, attachment_id: str) -> Path:
        with self._db.read() as conn:
            self._readable(conn, client, submission_id)
            row = conn.execute("SELECT file_name FROM attachments WHERE submission_id = ? AND attachment_id = ?",
                               (submission_id, attachment_id)).fetchone()
        if row is None:
            raise Problem(_P.ATTACHMENT_NOT_FOUND, f"submission {submission_id} has no attachment {attachment_id}")
        return self._dir / str(row["file_name"])

    def decide(self, client: Client, case_id: str, token: str) -> Callback | None:
        """Record a subscriber's accept- or reject-submission SET for a submission of ``case_id``."""
        if client.role != "subscriber":
            raise _forbid("only a subscriber may post events")
        with self._db.read() as conn:
            rows = conn.execute("SELECT destination_id FROM submissions WHERE case_id = ?", (case_id,)).fetchall()
        if not rows:
            raise Problem(_P.CASE_NOT_FOUND, f"case {case_id} does not exist")
        mine = sorted({r["destination_id"] for r in rows} & client.destinations)
        if not mine:
            raise _forbid(f"case {case_id} does not belong to a destination of this client")
        dest = self._destination(mine[0])
        assert dest is not None
        event = verify_subscriber_set(token, case_id=case_id, destination_id=dest.destination_id,
                                      signature_jwk=dest.signature_jwk)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT * FROM submissions WHERE submission_id = ? AND case_id = ?",
                               (event.submission_id, case_id)).fetchone()
            if row is None or row["destination_id"] != dest.destination_id:
                raise Problem(_P.SET_INVALID, f"sub: submission {event.submission_id} is not in case {case_id}"
                                              f" at destination {dest.destination_id}")
            if conn.execute("SELECT 1 FROM events WHERE jti = ?", (event.jti,)).fetchone() is not None:
                raise Problem(_P.INVALID_STATE_TRANSITION, f"an event with jti {event.jti} is already logged")
            new = Status.ACCEPTED if event.event == ACCEPT else Status.REJECTED
            self._transition(conn, row, new, _P.INVALID_STATE_TRANSITION)
            if event.event == ACCEPT and "authenticationTags" in event.payload:
                self._check_tags(conn, row, event.payload["authenticationTags"])
            conn.execute("INSERT INTO events (case_id, submission_id, event, jti, token, issued_by, created_at)"
                         " VALUES (?, ?, ?, ?, ?, 'subscriber', ?)",
                         (case_id, event.submission_id, event.event, event.jti, token, time.time()))
        assert event.event in (ACCEPT, REJECT)
        if row["callback_url"] and row["callback_secret"]:
            return Callback(row["callback_url"], row["callback_secret"], NEW_EVENTS,
                            [(row["destination_id"], row["submission_id"], case_id)])
        return None

    @staticmethod
    def _check_tags(conn: sqlite3.Connection, row: sqlite3.Row, tags: dict[str, Any]) -> None:
        expected: dict[str, Any] = {"metadata": authentication_tag(row["encrypted_metadata"]),
                                    "attachments": {r["attachment_id"]: r["auth_tag"] for r in conn.execute(
                                        "SELECT attachment_id, auth_tag FROM attachments WHERE submission_id = ?",
                                        (row["submission_id"],))}}
        if row["encrypted_data"] is not None:
            expected["data"] = authentication_tag(row["encrypted_data"])
        got = {"metadata": tags.get("metadata"), "attachments": tags.get("attachments") or {}}
        if "data" in expected:
            got["data"] = tags.get("data")
        if got != expected:
            raise Problem(_P.SET_INVALID, "authenticationTags do not match the submission as submitted")

    # -- both ------------------------------------------------------------------------------------------------

    def event_log(self, client: Client, case_id: str, limit: int, offset: int) -> dict[str, Any]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT destination_id, sender_client_id FROM submissions WHERE case_id = ?",
                                (case_id,)).fetchall()
            if not rows:
                raise Problem(_P.CASE_NOT_FOUND, f"case {case_id} does not exist")
            allowed = any(r["sender_client_id"] == client.client_id if client.role == "sender"
                          else r["destination_id"] in client.destinations for r in rows)
            if not allowed:
                raise _forbid(f"case {case_id} is not visible to this client")
            total = conn.execute("SELECT count(*) FROM events WHERE case_id = ?", (case_id,)).fetchone()[0]
            tokens = [r["token"] for r in conn.execute(
                "SELECT token FROM events WHERE case_id = ? ORDER BY seq LIMIT ? OFFSET ?", (case_id, limit, offset))]
        return page(total, offset, tokens, "eventLog")

    # -- internals -------------------------------------------------------------------------------------------

    @staticmethod
    def _transition(conn: sqlite3.Connection, row: sqlite3.Row, new: Status, conflict: ProblemType) -> None:
        current = Status(row["status"])
        try:
            check(current, new)
        except IllegalTransition as exc:
            raise Problem(conflict, f"submission {row['submission_id']}: {exc}") from exc
        if conn.execute("UPDATE submissions SET status = ? WHERE submission_id = ? AND status = ?",
                        (new, row["submission_id"], current)).rowcount != 1:
            raise Problem(conflict, f"submission {row['submission_id']} changed status concurrently")

    def _log(self, conn: sqlite3.Connection, issuer: str, event: str, submission_id: str, case_id: str,
             payload: dict[str, Any] | None = None) -> None:
        jti, token = self._key.sign(issuer=issuer, event=event, submission_id=submission_id, case_id=case_id,
                                    payload=payload)
        conn.execute("INSERT INTO events (case_id, submission_id, event, jti, token, issued_by, created_at)"
                     " VALUES (?, ?, ?, ?, ?, 'delivery-service', ?)",
                     (case_id, submission_id, event, jti, token, time.time()))

    @staticmethod
    def _reduced(row: sqlite3.Row, attachments: list[str]) -> dict[str, Any]:
        return {"destinationId": row["destination_id"], "submissionId": row["submission_id"],
                "caseId": row["case_id"], "attachments": attachments,
                "serviceType": json.loads(row["service_type"])}

