"""The FIT-Connect subscriber: list pending submissions, fetch and verify one, accept or reject it.

::

    client = SubscriberClient(config)                 # loads and checks every destination's keys
    for ref in client.pending(destination_id):        # GET /v1/submissions, all pages
        submission = client.fetch(ref, workdir)       # decrypt + verify; attachments streamed to workdir
        ...store it...                                # the hub commits before anything is acknowledged
        client.accept(ref, submission.auth_tags)      # or client.reject(ref, rejected.problems)

Errors (see :mod:`hub.errors`): :class:`~channels.fitconnect.reject_reasons.SubmissionRejected` (an ``Invalid``)
when the submission can never be processed, ``Retriable`` for anything transient (``Deferred`` while the
delivery service's rate limit is exhausted), ``Permanent`` for our own misconfiguration. Accept and reject
are idempotent: the case's event log is read first, and a 409 is resolved by reading it again.

Sizes are checked before work is spent on them: the submission answer, each JWE against the plaintext
limits it could hold, the number of attachments, and each attachment against what is left of the
submission's total (``Content-Length`` before the download, counted bytes during it, plaintext while
decrypting). What a sender exceeds is a ``technical-error`` for that part.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.fitconnect import metadata as checks
from channels.fitconnect import reject_reasons as p
from channels.fitconnect.api import AnswerTooLarge, SubmissionApi, TooLarge
from channels.fitconnect.config import DestinationConfig, FitConnectConfig
from channels.fitconnect.crypto import DecryptionFailed, PlaintextTooLarge, decrypt_compact, decrypt_file
from channels.fitconnect.events import ACCEPT, REJECT, SetInvalid, accept_set, reject_set, verify_set
from channels.fitconnect.keys import PrivateKey, Purpose, load_private_key, public_key_from_jwk
from channels.fitconnect.models import Attachment, AuthTags, CaseEvent, Submission, SubmissionRef
from channels.fitconnect.reject_reasons import EventProblem, SubmissionRejected
from channels.fitconnect.token import TokenCache
from hub.errors import Permanent, Retriable
from hub.jsonsafe import DEFAULT_JSON_LIMITS, JsonLimits
from hub.xmlsafe import XmlLimits

__all__ = ["SubscriberClient"]

log = logging.getLogger(__name__)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_JWKS_MIN_REFRESH = 60.0  # an unknown kid triggers a JWKS refetch at most this often
_MAX_PAGES = 200  # a listing or event log longer than this is read on for the next poll, never forever
_JWE_OVERHEAD = 64 * 1024  # protected header, encrypted key (RSA 4096), IV and tag, with room to spare


def jwe_limit(plaintext_bytes: int) -> int:
    """The longest compact JWE that can hold ``plaintext_bytes`` (base64url adds a third)."""
    return plaintext_bytes * 4 // 3 + _JWE_OVERHEAD


@dataclass(frozen=True)
class _Keys:
    encryption: PrivateKey
    signing: PrivateKey


def _ref(item: Any) -> SubmissionRef | None:
    """One listing entry, or None when it is not three UUIDs (they become paths and database keys)."""
    if not isinstance(item, dict):
        return None
    ids = [item.get(k) for k in ("submissionId", "caseId", "destinationId")]
    if not all(isinstance(i, str) and _UUID.match(i) for i in ids):
        return None
    return SubmissionRef(str(ids[0]), str(ids[1]), str(ids[2]))


def _load(destination: DestinationConfig, kind: Purpose) -> PrivateKey:
    path, env = getattr(destination, f"{kind}_key"), getattr(destination, f"{kind}_key_env")
    if path is not None:
        return load_private_key(path, kind, where=f"{path} (destination {destination.id})")
    text = os.environ.get(env or "")
    if not text:
        raise Permanent(f"{kind} key of destination {destination.id}: environment variable ${env} is not set")
    return load_private_key(text, kind, where=f"${env} (destination {destination.id})")


class SubscriberClient:
    """Thread-safe; one per process. ``transport`` replaces the network (tests record the requests)."""

    def __init__(self, config: FitConnectConfig, *, transport: httpx.BaseTransport | None = None,
                 json_limits: JsonLimits = DEFAULT_JSON_LIMITS, xml_max_depth: int = 256) -> None:
        self.config = config
        self._metadata_limits = dataclasses.replace(json_limits, max_bytes=config.max_metadata_bytes)
        self._data_limits = dataclasses.replace(json_limits, max_bytes=config.max_data_bytes)
        self._xml_limits = XmlLimits(max_bytes=config.max_data_bytes, max_depth=xml_max_depth)
        #: GET /v1/submissions/{id} carries the encrypted metadata and data: room for both at their limits
        self._submission_answer_max = jwe_limit(config.max_data_bytes) + jwe_limit(config.max_metadata_bytes) \
            + 1024 * 1024
        self._keys = {d.id.lower(): _Keys(_load(d, "encryption"), _load(d, "signing")) for d in config.destinations}
        timeout = httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds)
        self._http = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)
        self._tokens = TokenCache(config, self._http)
        self.api = SubmissionApi(config.submission_api_url, self._http, self._tokens.token, json_limits=json_limits)
        self._jwks_lock = threading.Lock()
        self._jwks: dict[str, rsa.RSAPublicKey] = {}
        self._jwks_fetched = float("-inf")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SubscriberClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _destination(self, destination_id: str) -> _Keys:
        try:
            return self._keys[destination_id.lower()]
        except KeyError:
            raise Permanent(f"destination {destination_id} is not configured for FIT-Connect") from None

    # -- listing ------------------------------------------------------------------------------------------

    def pending(self, destination_id: str) -> Iterator[SubmissionRef]:
        """Submissions waiting for pickup. All pages are read before the first is yielded, so accepting
        while iterating cannot shift the offsets and skip one."""
        self._destination(destination_id)
        refs: dict[str, SubmissionRef] = {}
        offset, limit = 0, self.config.page_size
        for _ in range(_MAX_PAGES):
            page = self.api.get_json("/v1/submissions", what=f"GET /v1/submissions ({destination_id})",
                                     params={"destinationId": destination_id, "limit": limit, "offset": offset})
            items = page.get("submissions") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise Retriable("GET /v1/submissions: answer without a 'submissions' list")
            for item in items:
                ref = _ref(item)
                if ref is None:  # the delivery service's mistake: the others are still fetched
                    log.warning("fitconnect: skipping a malformed entry of GET /v1/submissions")
                elif ref.destination_id.lower() == destination_id.lower():
                    refs.setdefault(ref.submission_id.lower(), ref)
            offset += len(items)
            total = page.get("totalCount")
            if not items or len(items) < limit or (isinstance(total, int) and offset >= total):
                break
        yield from refs.values()

    # -- fetching and verifying -------------------------------------------------------------------------------

    def fetch(self, ref: SubmissionRef, workdir: Path) -> Submission:
        """Fetch, decrypt and verify a submission; attachments end up as files in ``workdir``.

        Raises :class:`SubmissionRejected` with every problem found (nothing is left in ``workdir`` then),
        ``Retriable`` on transient failures (partial files removed), ``Permanent`` on misconfiguration."""
        keys = self._destination(ref.destination_id)
        what = f"GET /v1/submissions/{ref.submission_id}"
        try:
            body = self.api.get_json(f"/v1/submissions/{ref.submission_id}", what=what,
                                     max_bytes=self._submission_answer_max)
        except AnswerTooLarge as exc:
            raise SubmissionRejected([p.technical_error(
                f"Die Einreichung ist größer als {exc.limit} Bytes (verschlüsselte Metadaten und Fachdaten).")]) \
                from None
        if not isinstance(body, dict) or not isinstance(body.get("serviceType"), dict) \
                or not isinstance(body.get("attachments", []), list):
            raise Retriable(f"{what}: the answer is not a submission")
        if str(body.get("destinationId", "")).lower() != ref.destination_id.lower():
            raise Permanent(f"{what}: belongs to destination {str(body.get('destinationId'))[:64]!r}, "
                            f"not {ref.destination_id}")
        service = body["serviceType"]
        service_id, service_name = str(service.get("identifier", ""))[:255], str(service.get("name", ""))[:500]
        metadata, metadata_tag = self._metadata(body.get("encryptedMetadata"), keys)
        problems: list[EventProblem] = []
        declared = metadata.get("publicServiceType")
        if isinstance(declared, dict) and declared.get("identifier") not in (None, service_id):
            problems.append(p.service_mismatch(f"Die Metadaten nennen {declared.get('identifier')}, die Einreichung "
                                               f"{service_id}."))
        data, data_tag, mime = self._data(body.get("encryptedData"), metadata, keys, problems)
        entries = checks.attachment_entries(metadata)
        listed = {str(a).lower(): str(a) for a in body.get("attachments") or []}
        most = self.config.max_attachments
        if max(len(entries), len(listed)) > most:
            problems.append(p.technical_error(f"Die Einreichung hat {max(len(entries), len(listed))} Anlagen; "
                                              f"der Empfänger nimmt höchstens {most} an."))
        elif entries.keys() != listed.keys():
            missing, extra = sorted(entries.keys() - listed.keys()), sorted(listed.keys() - entries.keys())
            problems.append(p.attachments_mismatch(
                f"In den Metadaten genannt, aber nicht hochgeladen: {missing or '-'}; hochgeladen, aber nicht in "
                f"den Metadaten: {extra or '-'}."))
        if problems:  # no need to download gigabytes for a submission that is rejected anyway
            raise SubmissionRejected(problems)
        attachments, tags = self._attachments(ref, entries, listed, keys, workdir)
        log.info("fitconnect: fetched submission %s (case %s, %d attachment(s))", ref.submission_id, ref.case_id,
                 len(attachments))
        return Submission(ref.submission_id, ref.case_id, ref.destination_id, service_id,
                          service_name, metadata, data, mime, attachments, AuthTags(metadata_tag, data_tag, tags))

    def _metadata(self, token: Any, keys: _Keys) -> tuple[dict[str, Any], str]:
        if not isinstance(token, str):
            raise SubmissionRejected([p.encryption_issue("metadata", "Die Einreichung enthält keine Metadaten.")])
        limit = self.config.max_metadata_bytes
        if len(token) > jwe_limit(limit):
            raise SubmissionRejected([p.technical_error(f"Die Metadaten sind größer als {limit} Bytes.", "metadata")])
        try:
            raw, tag = decrypt_compact(token, [keys.encryption], max_plaintext=limit)
        except PlaintextTooLarge:
            raise SubmissionRejected([p.technical_error(f"Die Metadaten sind größer als {limit} Bytes.",
                                                        "metadata")]) from None
        except DecryptionFailed as exc:
            raise SubmissionRejected([p.encryption_issue("metadata", f"Die Metadaten: {exc}.")]) from None
        metadata, found = checks.parse_metadata(raw, self._metadata_limits)
        found = found or checks.check_metadata(metadata or {})
        if found or metadata is None:
            raise SubmissionRejected(found)
        return metadata, tag

    def _data(self, token: Any, metadata: dict[str, Any], keys: _Keys,
              problems: list[EventProblem]) -> tuple[bytes, str, str]:
        if not isinstance(token, str):
            problems.append(p.missing_data())
            return b"", "", ""
        limit = self.config.max_data_bytes
        too_large = p.technical_error(f"Der Fachdatensatz ist größer als {limit} Bytes.", "data")
        if len(token) > jwe_limit(limit):
            problems.append(too_large)
            return b"", "", ""
        try:
            data, tag = decrypt_compact(token, [keys.encryption], max_plaintext=limit)
        except PlaintextTooLarge:
            problems.append(too_large)
            return b"", "", ""
        except DecryptionFailed as exc:
            problems.append(p.encryption_issue("data", f"Der Fachdatensatz: {exc}."))
            return b"", "", ""
        found = checks.check_data_hash(metadata, data)
        mime = checks.data_mime_type(metadata) or ""
        if not found and mime:
            found = checks.check_data_syntax(data, mime, self._data_limits, self._xml_limits)
        problems.extend(found)
        return data, tag, mime

    def _attachments(self, ref: SubmissionRef, entries: dict[str, dict[str, Any]], listed: dict[str, str],
                     keys: _Keys, workdir: Path) -> tuple[list[Attachment], dict[str, str]]:
        workdir.mkdir(parents=True, exist_ok=True)
        attachments: list[Attachment] = []
        tags: dict[str, str] = {}
        problems: list[EventProblem] = []
        left = self.config.max_submission_bytes  # for all attachments together
        try:
            for key, entry in entries.items():
                attachment_id = listed[key]
                instance = p.attachment_instance(attachment_id)
                if not _UUID.match(attachment_id):  # it becomes a file name: only UUIDs
                    problems.append(p.attachments_mismatch(f"Die Anlagen-Id {attachment_id!r} ist keine UUID."))
                    continue
                encrypted, target = workdir / f"{attachment_id}.jwe", workdir / f"attachment-{attachment_id}"
                path = f"/v1/submissions/{ref.submission_id}/attachments/{attachment_id}"
                most = min(self.config.max_attachment_bytes, left)
                try:
                    self.api.download(path, encrypted, what=f"GET {path}", max_bytes=jwe_limit(most))
                    decrypted = decrypt_file(encrypted, target, [keys.encryption], max_plaintext=most)
                except (TooLarge, PlaintextTooLarge):
                    if most == self.config.max_attachment_bytes:
                        problems.append(p.technical_error(
                            f"Die Anlage ist größer als {self.config.max_attachment_bytes} Bytes.", instance))
                        continue
                    problems.append(p.technical_error(
                        f"Die Anlagen sind zusammen größer als {self.config.max_submission_bytes} Bytes."))
                    break  # the total is spent: downloading the others would change nothing
                except DecryptionFailed as exc:
                    problems.append(p.encryption_issue(instance, f"Die Anlage {attachment_id}: {exc}."))
                    continue
                finally:
                    encrypted.unlink(missing_ok=True)
                left -= decrypted.size
                filename = entry.get("filename")
                attachments.append(Attachment(attachment_id, target, str(entry.get("mimeType", "")),
                                              filename if isinstance(filename, str) else None,
                                              str(entry.get("purpose", "")), decrypted.size, decrypted.sha256))
                if not checks.hash_matches(entry.get("hash"), decrypted.sha512):
                    problems.append(p.hash_mismatch(instance))
                    continue
                tags[attachment_id] = decrypted.auth_tag
            if problems:
                raise SubmissionRejected(problems)
        except BaseException:
            for attachment in attachments:
                attachment.path.unlink(missing_ok=True)
            raise
        return attachments, tags

    # -- answering ---------------------------------------------------------------------------------------------

    def accept(self, ref: SubmissionRef, auth_tags: AuthTags) -> None:
        """Post ``accept-submission`` with the authentication tags, unless the case already has a decision."""
        keys = self._destination(ref.destination_id)
        self._decide(ref, ACCEPT, lambda: accept_set(keys.signing, ref, auth_tags))

    def reject(self, ref: SubmissionRef, problems: list[EventProblem]) -> None:
        """Post ``reject-submission`` with ``problems``, unless the case already has a decision."""
        keys = self._destination(ref.destination_id)
        if not problems:
            raise ValueError("reject needs at least one problem")
        self._decide(ref, REJECT, lambda: reject_set(keys.signing, ref, problems))

    def _decide(self, ref: SubmissionRef, event: str, build: Any) -> None:
        name = event.rsplit("/", 1)[-1]
        if self._already(ref, event):
            return
        path = f"/v1/cases/{ref.case_id}/events"
        response = self.api.request("POST", path, what=f"POST {path} ({name})", allow=(409,), content=build(),
                                    headers={"Content-Type": "application/jose"})
        if response.status_code == 409:
            if self._already(ref, event):
                return
            raise Permanent(f"{name} for submission {ref.submission_id} refused with 409 (invalid state "
                            "transition) and the event log shows no decision of this submission",
                            detail={"status_code": 409})
        log.info("fitconnect: %s sent for submission %s (case %s)", name, ref.submission_id, ref.case_id)

    def _already(self, ref: SubmissionRef, event: str) -> bool:
        """True if the log already holds this decision; Permanent if it holds the other one."""
        decisions = [e for e in self.event_log(ref.case_id, ref.destination_id)
                     if e.event in (ACCEPT, REJECT) and (e.submission_id or "").lower() == ref.submission_id.lower()]
        for e in decisions:
            if not e.verified:
                log.warning("fitconnect: ignoring an unverifiable %s in case %s (issuer %s)", e.name, ref.case_id,
                            e.issuer)
        trusted = [e for e in decisions if e.verified]
        if not trusted:
            return False
        last = trusted[-1]
        if last.event == event:
            log.info("fitconnect: submission %s already carries %s; not sent again", ref.submission_id, last.name)
            return True
        raise Permanent(f"submission {ref.submission_id} already carries {last.name} (issued by {last.issuer} at "
                        f"{last.issued_at:%Y-%m-%d %H:%M:%S}Z); a different decision cannot be sent",
                        detail={"existing": last.name, "issuer": last.issuer})

    # -- event log -----------------------------------------------------------------------------------------------

    def event_log(self, case_id: str, destination_id: str) -> list[CaseEvent]:
        """All SETs of a case, in log order, each with ``verified`` set (see :class:`CaseEvent`)."""
        keys = self._destination(destination_id)
        tokens: list[str] = []
        offset, limit = 0, self.config.page_size
        for _ in range(_MAX_PAGES):
            page = self.api.get_json(f"/v1/cases/{case_id}/events", what=f"GET /v1/cases/{case_id}/events",
                                     params={"limit": limit, "offset": offset})
            items = page.get("eventLog") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise Retriable(f"GET /v1/cases/{case_id}/events: answer without an 'eventLog' list")
            tokens.extend(str(t) for t in items)
            offset += len(items)
            total = page.get("totalCount")
            if not items or len(items) < limit or not isinstance(total, int) or offset >= total:
                break

        def resolve(kid: str, issuer: str) -> rsa.RSAPublicKey | None:
            if issuer.lower() == destination_id.lower():  # our own SETs: only our signing key counts
                return keys.signing.public_key() if keys.signing.matches(kid) else None
            return self._service_key(kid)

        events = []
        for token in tokens:
            try:
                events.append(verify_set(token, resolve))
            except SetInvalid as exc:
                log.warning("fitconnect: malformed SET in case %s: %s", case_id, exc)
                events.append(CaseEvent("", "", datetime.fromtimestamp(0, UTC), {"invalid": str(exc)}, False))
        return events

    def _service_key(self, kid: str) -> rsa.RSAPublicKey | None:
        with self._jwks_lock:
            age = time.monotonic() - self._jwks_fetched
            stale = age > self.config.jwks_cache_seconds or (kid not in self._jwks and age > _JWKS_MIN_REFRESH)
            if stale:
                keys: dict[str, rsa.RSAPublicKey] = {}
                for jwk in self.api.jwks()["keys"]:
                    if isinstance(jwk, dict) and jwk.get("kid") and jwk.get("alg") in (None, "PS512"):
                        try:
                            keys[str(jwk["kid"])] = public_key_from_jwk(jwk)
                        except (ValueError, TypeError):
                            log.warning("fitconnect: skipping an unusable key %s in the delivery service's JWKS",
                                        jwk.get("kid"))
                self._jwks, self._jwks_fetched = keys, time.monotonic()
            return self._jwks.get(kid)
