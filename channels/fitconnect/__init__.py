"""The FIT-Connect channel: a subscriber that receives submissions for our destinations, verifies them and
answers back.

The subscriber library, one module per concept: ``config`` (pydantic settings), ``token`` (OAuth2 client
credentials), ``api`` (HTTP, response classification, rate limits, streamed downloads), ``crypto`` (JWE
decryption, streaming), ``metadata`` (schema, hashes, data syntax), ``events`` (SETs), ``keys`` (JWKs, x5c,
generation), ``callbacks`` (HMAC-verified push), ``reject_reasons`` (the problem types of a
``reject-submission``), ``models`` (the data handed over) and ``client`` (:class:`SubscriberClient`, which
ties them together). The channel in the hub: ``intake`` (the poller that stores submissions), ``channel``
(what the pipeline asks: refusals, accept and reject) and ``router`` (the callback endpoint). See
``docs/fitconnect.md``. Like every channel it depends on the core (``hub``) only.

Error kinds (:mod:`hub.errors`)::

    SubmissionRejected (Invalid)  the submission can never be processed → reject-submission with .problems
    Retriable                     network, 5xx, 429 (retry_after from Retry-After / RateLimit-Reset)
    └── Deferred                  rate limit exhausted: nothing was sent
    Permanent                     our misconfiguration: credentials, keys, unknown destination, conflicting decision
    CallbackRefused               a callback that is forged, stale or replayed (not a HubError: answer 401)
    └── CallbackMalformed         a callback header of a shape the protocol never sends (answer 400)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from channels.fitconnect.callbacks import (
        CallbackMalformed,
        CallbackRefused,
        ReplayGuard,
        callback_signature,
        verify_callback,
    )
    from channels.fitconnect.client import SubscriberClient
    from channels.fitconnect.config import DestinationConfig, FitConnectConfig
    from channels.fitconnect.events import ACCEPT, REJECT
    from channels.fitconnect.keys import KeyFiles, generate_destination_keys, verify_certificate_chain
    from channels.fitconnect.models import Attachment, AuthTags, CaseEvent, Submission, SubmissionRef
    from channels.fitconnect.reject_reasons import EventProblem, SubmissionRejected

#: Where each name lives: imported on first use, so that reading the configuration (``config``) does not load
#: the HTTP client, the JOSE stack and the schemas of the whole subscriber (``xhub validate`` starts faster).
_WHERE = {
    **dict.fromkeys(["CallbackMalformed", "CallbackRefused", "ReplayGuard", "callback_signature", "verify_callback"],
                    "callbacks"),
    "SubscriberClient": "client",
    "DestinationConfig": "config", "FitConnectConfig": "config",
    "ACCEPT": "events", "REJECT": "events",
    **dict.fromkeys(["KeyFiles", "generate_destination_keys", "verify_certificate_chain"], "keys"),
    **dict.fromkeys(["Attachment", "AuthTags", "CaseEvent", "Submission", "SubmissionRef"], "models"),
    "EventProblem": "reject_reasons", "SubmissionRejected": "reject_reasons",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


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
