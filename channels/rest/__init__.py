"""The REST intake channel: portals post XÖV or JSON messages with a sender token.

``door`` checks headers, body and payload in the order they cost; ``budget`` bounds the memory of bodies
and parses in flight; ``router`` is ``POST /api/v1/messages``. The channel has no answer-back: a portal
reads the status from the API, so the pipeline sees it as a :class:`hub.ports.StatusOnly` channel. Like
every channel it depends on the core (``hub``) only.
"""
