"""The FIT-Connect channel as the pipeline sees it (:class:`hub.ports.Channel`): refusals found at intake,
and the answer to the sender.

* :meth:`FitConnectChannel.verify`: a submission the intake could not decrypt or verify (hashes, metadata
  schema, …) was stored as a record carrying its reject reasons; the verify stage rejects it here, so that
  the ``reject-submission`` goes out from one place, with retries.
* :meth:`~FitConnectChannel.accept`: ``accept-submission`` with the authentication tags, once the message
  is delivered (or validated, per route);
* :meth:`~FitConnectChannel.reject`: ``reject-submission`` with FIT-Connect problem types
  (:func:`reasons_for`) when the message is rejected.

Both answers are idempotent in the library (the case's event log is read first). Without a ``[fitconnect]``
section there is no client: a FIT-Connect message stored earlier then cannot be answered, which is a
:class:`~hub.errors.Permanent` error (it waits in ``dead`` for an operator).
"""

from __future__ import annotations

from typing import Any, ClassVar

from channels.fitconnect import reject_reasons
from channels.fitconnect.client import SubscriberClient
from channels.fitconnect.intake import CHANNEL
from channels.fitconnect.models import AuthTags, SubmissionRef
from channels.fitconnect.reject_reasons import EventProblem
from hub.errors import HubError, Invalid, Permanent
from hub.models import Message

__all__ = ["FitConnectChannel", "reasons_for"]

#: The key of a refusal's reasons in the rejecting error's detail (set by verify, read by reject).
_REASONS = "fitconnect_problems"


class FitConnectChannel:
    """Answers FIT-Connect senders through ``client``; ``None`` when the channel is not configured."""

    name: ClassVar[str] = CHANNEL
    answers: ClassVar[bool] = True

    def __init__(self, client: SubscriberClient | None) -> None:
        self.client = client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def verify(self, message: Message) -> None:
        refused = _facts(message).get("refused")
        if refused:  # the intake stored it only so that it is rejected from here, with its reasons
            found = "; ".join(f"{p['type'].rsplit('/', 1)[-1]} ({p['instance']}): {p['detail']}" for p in refused)
            raise Invalid(f"the submission cannot be processed: {found}", detail={_REASONS: refused})

    def accept(self, message: Message) -> str:
        client = self._client()
        tags = _facts(message)["auth_tags"]
        client.accept(_ref(message), AuthTags(tags["metadata"], tags["data"], tags["attachments"]))
        return "accept-submission sent"

    def reject(self, message: Message, error: HubError, stage: str) -> str:
        client = self._client()
        reasons = reasons_for(error, stage)
        client.reject(_ref(message), reasons)
        kinds = ", ".join(p.type.removeprefix(reject_reasons.PROBLEM_BASE) for p in reasons)
        return f"reject-submission sent ({kinds})"

    def _client(self) -> SubscriberClient:
        if self.client is None:
            raise Permanent(f"channel {CHANNEL} needs an answer, but it is not configured")
        return self.client


def _facts(message: Message) -> dict[str, Any]:
    """What the intake recorded for answering (:func:`channels.fitconnect.intake._answer_facts`)."""
    facts: dict[str, Any] = (message.attributes or {}).get(CHANNEL) or {}
    return facts


def _ref(message: Message) -> SubmissionRef:
    facts = _facts(message)
    return SubmissionRef(facts["submission_id"], facts["case_id"], facts["destination_id"])


def reasons_for(error: HubError, stage: str) -> list[EventProblem]:
    """The FIT-Connect problem types that say why the hub rejects a message at ``stage``."""
    refused = error.detail.get(_REASONS)
    if refused:  # found when fetching: decryption, hashes, metadata schema (the library's own verdict)
        return [EventProblem.from_json(p) for p in refused]
    detail = str(error)
    if stage == "verify":
        return [reject_reasons.syntax_violation("data", detail)]
    if stage == "validate":
        return [reject_reasons.schema_violation("data", detail)]
    if stage == "route":  # the route takes only messages whose schema could be checked
        return [reject_reasons.unsupported_schema("data", detail)]
    return [reject_reasons.technical_error(detail)]
