"""FIT-Connect subscriber library: receive submissions for our destinations, verify them, answer back.

One module per concept: ``config`` (pydantic settings), ``token`` (OAuth2 client credentials), ``api``
(HTTP, response classification, rate limits, streamed downloads), ``crypto`` (JWE decryption, streaming),
``metadata`` (schema, hashes, data syntax), ``events`` (SETs), ``keys`` (JWKs, x5c, generation),
``callbacks`` (HMAC-verified push), ``problems`` (reject reasons), ``models`` (the data handed over) and
``client`` (:class:`SubscriberClient`, which ties them together). See ``docs/fitconnect.md``.

Error kinds (:mod:`hub.errors`)::

    SubmissionRejected (Invalid)  the submission can never be processed → reject-submission with .problems
    Retriable                     network, 5xx, 429 (retry_after from Retry-After / RateLimit-Reset)
    └── Deferred                  rate limit exhausted: nothing was sent
    Permanent                     our misconfiguration: credentials, keys, unknown destination, conflicting decision
    CallbackRefused               a callback that is forged, stale or replayed (not a HubError: answer 401)
    └── CallbackMalformed         a callback header of a shape the protocol never sends (answer 400)
"""

from __future__ import annotations

from adapters.fitconnect.callbacks import (
    CallbackMalformed,
    CallbackRefused,
    ReplayGuard,
    callback_signature,
    verify_callback,
)
from adapters.fitconnect.client import SubscriberClient
from adapters.fitconnect.config import DestinationConfig, FitConnectConfig
from adapters.fitconnect.events import ACCEPT, REJECT
from adapters.fitconnect.keys import KeyFiles, generate_destination_keys, verify_certificate_chain
from adapters.fitconnect.models import Attachment, AuthTags, CaseEvent, Submission, SubmissionRef
from adapters.fitconnect.problems import EventProblem, SubmissionRejected

__all__ = [
    "ACCEPT",
    "REJECT",
    "Attachment",
    "AuthTags",
    "CallbackMalformed",
    "CallbackRefused",
    "CaseEvent",
    "DestinationConfig",
    "EventProblem",
    "FitConnectConfig",
    "KeyFiles",
    "ReplayGuard",
    "Submission",
    "SubmissionRef",
    "SubmissionRejected",
    "SubscriberClient",
    "callback_signature",
    "generate_destination_keys",
    "verify_callback",
    "verify_certificate_chain",
]
