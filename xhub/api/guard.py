"""The outermost handler of the hub's own middleware: nothing a request raises reaches the server.

Starlette's ``ServerErrorMiddleware`` answers an unhandled error with a 500 and then re-raises it, and
uvicorn closes the connection when an application raises, so one failing request also broke the next
request on the same keep-alive connection, and its traceback went to the log unfiltered. This pure ASGI
middleware sits inside it and answers for itself:

* headers beyond ``api.max_header_bytes`` are refused with 431 before anything reads them;
* the client went away while sending its body (``ClientDisconnect``): logged at debug; there is nobody to
  answer, and nothing was stored because the body never arrived;
* the database is unreachable or busy: ``503 database-unavailable`` with ``Retry-After``, a one-line warning;
* anything else is a bug: ``500 internal-error`` with a generic detail; the log gets the type, a message
  safe to log (no SQL parameters) and the stack.

The connection stays usable. When the response had already started, nothing more can be said: the server
then closes the connection, since the response is incomplete.
"""

from __future__ import annotations

import logging
import traceback

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.problems import Problem, database_unavailable, is_database_unavailable, safe_description

__all__ = ["ErrorGuard"]

log = logging.getLogger(__name__)


class ErrorGuard:
    """Answers every unhandled error as a problem and never lets it propagate to the server."""

    def __init__(self, app: ASGIApp, retry_after: int, max_header_bytes: int) -> None:
        self.app = app
        self.retry_after = retry_after
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = sum(len(name) + len(value) for name, value in scope["headers"])
        if size > self.max_header_bytes:
            # The server reads a whole header block it received at once; past this, nothing looks at it.
            problem = Problem(431, "headers-too-large", "Request headers too large",
                              f"the request headers have {size} bytes; the limit is {self.max_header_bytes}",
                              headers={"Connection": "close"})
            await problem.response(scope.get("path"))(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except ClientDisconnect:
            log.debug("client disconnected during %s %s", scope.get("method"), scope.get("path"))
            return
        except Exception as exc:  # the supervisor of every request: logged with its type, answered as a problem
            problem = self._problem(scope, exc)
            if not started:
                await problem.response(scope.get("path"))(scope, receive, send)

    def _problem(self, scope: Scope, exc: Exception) -> Problem:
        where = f"{scope.get('method')} {scope.get('path')}"
        if is_database_unavailable(exc):
            log.warning("database unavailable during %s: %s", where, safe_description(exc))
            return database_unavailable(self.retry_after)
        stack = "".join(traceback.format_tb(exc.__traceback__))
        # the type and the frames only: an exception's text can quote the request (a document, a token)
        log.error("unexpected error during %s: %s\n%s", where, type(exc).__name__, stack)
        return Problem(500, "internal-error", "Internal error",
                       "the hub failed to handle this request; the error is in its log")
