"""``xhub submit``: post files to a running hub's REST intake, as a portal would.

The token is a credential of the sender: it is checked locally before anything is sent (RFC 6750 token
characters), and it never appears in any output, also not when the hub, a proxy or the network answers with
something that quotes it. Each file is checked (a regular file, not larger than ``max_bytes``) before it is
read; one bad file does not stop the others. An unreachable hub stops the run (every other file would fail
the same way).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from hub.configfile import FileProblem, read_bytes
from hub.http_support import BEARER_TOKEN, redact_url, transport_problem
from hub.jsonsafe import JsonLimits, JsonRejected, loads
from xhub.cli import common

__all__ = ["SubmitProblem", "Submitter", "submit"]

_ANSWER_LIMITS = JsonLimits(max_bytes=1024 * 1024, max_depth=16, max_string_chars=64 * 1024)


class SubmitProblem(Exception):
    """The run cannot go on (bad token or URL, hub unreachable). One line, without the token."""


@dataclass
class Submitter:
    url: str
    token: str
    max_bytes: int
    idempotency_key: bool = True
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not BEARER_TOKEN.fullmatch(self.token):
            raise SubmitProblem("the token is not a bearer token (letters, digits and -._~+/, optionally = at the "
                                "end); check --token / XHUB_TOKEN")
        try:
            parsed = httpx.URL(self.url)
        except httpx.InvalidURL:
            raise SubmitProblem(f"--url {redact_url(self.url)} is not a URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise SubmitProblem(f"--url {redact_url(self.url)} is not an http(s) URL of the hub")

    def scrub(self, text: str) -> str:
        """``text`` without the token (a proxy's error page may quote the request's headers)."""
        return text.replace(self.token, "***")

    def run(self, files: list[Path], say: Callable[[str], None]) -> int:
        """Submit every file; ``say`` gets one line per file. Returns the number of files not accepted."""
        failed = 0
        with httpx.Client(base_url=self.url, timeout=self.timeout, follow_redirects=False) as client:
            for path in files:
                try:
                    body = read_bytes(path, self.max_bytes, "the file")
                except FileProblem as exc:
                    failed += 1
                    say(f"not sent: {exc}")
                    continue
                ok, line = self._send(client, path, body)
                failed += not ok
                say(self.scrub(line))
        return failed

    def _send(self, client: httpx.Client, path: Path, body: bytes) -> tuple[bool, str]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/xml"}
        if self.idempotency_key:
            headers["Idempotency-Key"] = "sha256-" + hashlib.sha256(body).hexdigest()
        try:
            r = client.post("/api/v1/messages", content=body, headers=headers)
        except httpx.TransportError as exc:
            raise SubmitProblem(self.scrub(f"cannot reach {redact_url(self.url)}: {transport_problem(exc)}")) from None
        answer = _json(r)
        if r.status_code in (200, 202) and isinstance(answer.get("id"), str):
            note = " (already submitted)" if r.status_code == 200 else ""
            return True, f"{path}: {answer['id']} {answer.get('status', '?')}{note}"
        if r.status_code in (200, 202):
            return False, f"{path}: the hub answered {r.status_code} without a message id; is --url the hub?"
        title = str(answer.get("title", ""))[:200]
        detail = str(answer.get("detail", "")) if answer else _first_line(r.text)
        return False, f"{path}: refused {r.status_code} {title}: {detail[:500]}".replace(" :", ":")


def _json(response: httpx.Response) -> dict[str, Any]:
    if "json" not in response.headers.get("content-type", ""):
        return {}
    try:
        value = loads(response.content, _ANSWER_LIMITS)
    except JsonRejected:
        return {}
    return value if isinstance(value, dict) else {}


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def submit(
    files: Annotated[list[Path], typer.Argument(help="XML files to submit")],
    url: Annotated[str, typer.Option(envvar="XHUB_URL", help="the hub's base URL")] = "http://127.0.0.1:8080",
    token: Annotated[str, typer.Option(envvar="XHUB_TOKEN", help="sender token", show_default=False)] = "",
    idempotency_key: Annotated[bool, typer.Option(help="send the file's SHA-256 as Idempotency-Key")] = True,
    max_bytes: Annotated[int, typer.Option(min=1, help="larger files are not sent (the hub's default "
                                                       "api.max_body_bytes)")] = 10 * 1024 * 1024,
) -> None:
    """Send files to a running hub's REST intake. Exit 1 if any was not accepted, 2 if the hub is unreachable."""
    if not token:
        common.fail("a sender token is needed (--token or XHUB_TOKEN)")
    try:
        failed = Submitter(url, token, max_bytes, idempotency_key).run(files, typer.echo)
    except SubmitProblem as exc:
        common.fail(str(exc))
    raise typer.Exit(1 if failed else 0)
