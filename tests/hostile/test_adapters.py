"""Door: the answers of the systems the hub delivers to (REST and SOAP targets, the OAuth2 token endpoint, a
drop folder's file system).

Attacks and accidents covered: every row of the HTTP status table against a real loopback server (each
adapter must reach the same verdict), ``Retry-After`` garbage (non-ASCII digits, fractions, negative,
huge, impossible dates), redirects to another host (never followed), credentials in URLs (never in the
audit trail), token endpoints answering nonsense, and file systems that are full, read-only, immutable,
size-limited or failing at each step of a write (the outcome follows the errno table, no temp file is left
behind, a healing error opens the circuit breaker and the messages wait instead of dying). After each
hostile answer a normal delivery through the same adapter still succeeds.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import SecretStr
from sqlalchemy import Engine, update

from adapters.file import RETRIABLE_ERRNOS, FileAdapter, FileConfig
from hub import store
from hub.errors import HubError, Permanent, Retriable
from hub.http_status import RETRIABLE, RETRY_AFTER_CAP_SECONDS, Outcome, classify_status, retry_after_seconds
from hub.http_support import TokenCache
from hub.models import Message, TargetState, utcnow
from hub.ports import DeliveryRequest
from hub.targets import target_overview
from sandbox.vehicle_registry import WSDL_DIR
from tests.support import accept_many, hub_config, running
from xhub import registry
from xhub.runtime import make_worker

# The table, row by row: status → outcome (what the module docstring and docs/security/config.md say).
TABLE: dict[int, Outcome] = {
    200: Outcome.SUCCESS, 201: Outcome.SUCCESS, 202: Outcome.SUCCESS, 204: Outcome.SUCCESS,
    301: Outcome.PERMANENT, 302: Outcome.PERMANENT, 303: Outcome.PERMANENT, 304: Outcome.PERMANENT,
    307: Outcome.PERMANENT, 308: Outcome.PERMANENT,
    400: Outcome.PERMANENT, 401: Outcome.PERMANENT, 403: Outcome.PERMANENT, 404: Outcome.PERMANENT,
    405: Outcome.PERMANENT, 408: Outcome.RETRIABLE, 410: Outcome.PERMANENT, 413: Outcome.PERMANENT,
    415: Outcome.PERMANENT, 422: Outcome.PERMANENT, 423: Outcome.PERMANENT, 425: Outcome.RETRIABLE,
    429: Outcome.RETRIABLE, 451: Outcome.PERMANENT, 499: Outcome.PERMANENT,
    500: Outcome.RETRIABLE, 501: Outcome.PERMANENT, 502: Outcome.RETRIABLE, 503: Outcome.RETRIABLE,
    504: Outcome.RETRIABLE, 505: Outcome.PERMANENT, 506: Outcome.PERMANENT, 507: Outcome.RETRIABLE,
    508: Outcome.PERMANENT, 509: Outcome.RETRIABLE, 510: Outcome.PERMANENT, 511: Outcome.PERMANENT,
    520: Outcome.RETRIABLE, 521: Outcome.RETRIABLE, 522: Outcome.RETRIABLE, 523: Outcome.RETRIABLE,
    524: Outcome.RETRIABLE, 525: Outcome.RETRIABLE, 526: Outcome.RETRIABLE, 527: Outcome.RETRIABLE,
    530: Outcome.RETRIABLE, 599: Outcome.RETRIABLE,
}


def status_app() -> FastAPI:
    """Answers ``/s/<status>`` with that status; ``?retry_after=…`` and ``?location=…`` set those headers.
    ``/token/<status>`` is an OAuth2 token endpoint answering that status; ``/hits`` counts requests."""
    app = FastAPI()
    hits: list[str] = []

    @app.api_route("/s/{status}", methods=["GET", "POST", "PUT"])
    async def answer(status: int, request: Request) -> Response:
        hits.append(request.url.path)
        headers = {k: v for k, v in (("retry-after", request.query_params.get("retry_after")),
                                      ("location", request.query_params.get("location"))) if v is not None}
        return Response(b"" if status in (204, 304) else b"why", status_code=status, headers=headers)

    @app.post("/token/{status}")
    async def token(status: int) -> Response:
        body = {"access_token": "abc.def", "expires_in": 60} if status == 200 else {"error": "invalid_client"}
        return Response(json.dumps(body), status_code=status, media_type="application/json")

    @app.get("/hits")
    async def count() -> dict[str, Any]:
        return {"hits": hits}

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running(status_app()) as url:
        yield url


def request(body: bytes = b"<a/>", content_type: str = "application/xml", key: str | None = None) -> DeliveryRequest:
    return DeliveryRequest("m1", "t", key or f"xhub-{uuid.uuid4()}-t", body, content_type)


def outcome_of(call: Any) -> tuple[Outcome, HubError | None]:
    try:
        call()
    except Retriable as exc:
        return Outcome.RETRIABLE, exc
    except Permanent as exc:
        return Outcome.PERMANENT, exc
    return Outcome.SUCCESS, None


@contextmanager
def rest(url: str, **settings: Any) -> Iterator[Any]:
    adapter = registry.build("t", "rest", {"url": url, "timeout_seconds": 5, **settings})
    try:
        yield adapter
    finally:
        adapter.close()  # type: ignore[attr-defined]


# -- the status table ---------------------------------------------------------------------------------


def test_the_table_is_the_one_classifier() -> None:
    assert all(classify_status(s).outcome is outcome for s, outcome in TABLE.items())
    assert {s for s in range(100, 600) if classify_status(s).retriable} == RETRIABLE
    assert {classify_status(s).outcome for s in (100, 101, 199, 0, 99, 600, 999)} == {Outcome.PERMANENT}


@pytest.mark.parametrize("status", sorted(TABLE))
def test_rest_follows_the_table(server: str, status: int) -> None:
    with rest(f"{server}/s/{status}") as adapter:
        got, error = outcome_of(lambda: adapter.deliver(request()))
    assert got is (Outcome.SUCCESS if status == 409 else TABLE[status]), error
    if error is not None:
        assert error.detail["status_code"] == status and f"answered {status}" in str(error)
        with rest(f"{server}/s/201") as again:  # the adapter still delivers afterwards
            assert again.deliver(request()).status_code == 201


@pytest.mark.parametrize("status", [200, 202, 302, 400, 404, 408, 429, 500, 501, 502, 503, 505, 507, 511, 521, 599])
def test_soap_follows_the_table_for_answers_without_an_envelope(server: str, status: int) -> None:
    adapter = registry.build("kfz", "soap", {"wsdl": str(WSDL_DIR / "vehicle-registry.wsdl"),
                                             "operation": "RegisterVehicle", "endpoint": f"{server}/s/{status}"})
    body = json.dumps({"Owner": {"FamilyName": "M", "GivenName": "E", "BirthDate": "1964-08-12",
                                 "Address": {"Street": "S", "HouseNumber": "1", "PostalCode": "87700",
                                             "City": "Memmingen"}},
                       "Vin": "WVWZZZ1JZYW000001", "RegistrationDistrict": "MM"}).encode()
    got, error = outcome_of(lambda: adapter.deliver(request(body, "application/json")))
    adapter.close()  # type: ignore[attr-defined]
    # A 2xx that is not a SOAP reply is a target answering something else than its WSDL: permanent.
    expected = Outcome.PERMANENT if TABLE[status] is Outcome.SUCCESS else TABLE[status]
    assert got is expected and error is not None and str(status) in str(error)


@pytest.mark.parametrize("status", [200, 201, 302, 400, 401, 403, 404, 408, 429, 500, 501, 503, 507, 520])
def test_token_endpoint_follows_the_table(server: str, status: int) -> None:
    with httpx.Client(timeout=5) as client:
        cache = TokenCache(token_url=f"{server}/token/{status}", client_id="hub",
                           client_secret=SecretStr("s3cret-client"), scope=None, refresh_margin_seconds=0,
                           client=client)
        got, error = outcome_of(cache.token)
    if status == 200:
        assert got is Outcome.SUCCESS
        return
    # 201 answers {"error": …}: no usable token, the endpoint's fault (retried, like a 5xx).
    # 400/401/403 refuse the credentials.
    expected = {201: Outcome.RETRIABLE, 400: Outcome.PERMANENT, 401: Outcome.PERMANENT,
                403: Outcome.PERMANENT}.get(status, TABLE[status])
    assert got is expected and error is not None and "s3cret-client" not in str(error)
    if status in (400, 401, 403):
        assert "refused the client credentials of 'hub'" in str(error) and "invalid_client" in str(error)


# -- Retry-After ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("7", 7.0), ("0", 0.0), (" 30 ", 30.0), ("-5", None), ("1.5", None), ("+5", None), ("\u0661\u0662", None),
    ("99999999999", RETRY_AFTER_CAP_SECONDS), ("9" * 5000, None), ("soon", None), ("", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("Fri, 01 Jan 99999 00:00:00 GMT", None),
    ("Mon, 32 Foo 2025 99:99:99 GMT", None), ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_CAP_SECONDS),
])
def test_retry_after_values(value: str, expected: float | None) -> None:
    assert retry_after_seconds(value) == expected


@pytest.mark.parametrize(("header", "low", "high"), [
    ("7", 7, 7), ("garbage", None, None), ("1e9", None, None), ("31536000", 86400, 86400), ("in 120 s", 100, 120),
])
def test_retry_after_from_a_real_target(server: str, header: str, low: float | None, high: float | None) -> None:
    if header == "in 120 s":
        header = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    with rest(f"{server}/s/503?retry_after={header}") as adapter, pytest.raises(Retriable) as info:
        adapter.deliver(request())
    seconds = info.value.retry_after
    assert (seconds is None) if low is None else (low <= (seconds or -1) <= (high or 0))


# -- redirects and credentials in URLs -------------------------------------------------------------------


def test_a_redirect_to_another_host_is_not_followed(server: str) -> None:
    with running(status_app()) as other:
        with rest(f"{server}/s/307?location={other}/s/201?token%3Dleak") as adapter, pytest.raises(Permanent) as info:
            adapter.deliver(request())
        assert httpx.get(f"{other}/hits").json()["hits"] == []  # the other host never saw the body
    assert "a redirect to" in str(info.value) and "leak" not in str(info.value)


@pytest.mark.parametrize("url", [
    "http://hub:pa55word@127.0.0.1:1/cases?api_key=pa55word",
    "http://127.0.0.1:1/cases?token=pa55word&x=1",
])
def test_credentials_in_a_target_url_never_reach_the_trail(url: str) -> None:
    with rest(url, connect_timeout_seconds=1) as adapter, pytest.raises(Retriable) as info:
        adapter.deliver(request())
    assert "pa55word" not in str(info.value) and "***" in str(info.value)


# -- the file system ---------------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) if folder.exists() else []


@pytest.mark.parametrize(("code", "step"), [
    (errno.ENOSPC, "write"), (errno.EDQUOT, "write"), (errno.EROFS, "open"), (errno.EIO, "fsync"),
    (errno.EAGAIN, "write"), (errno.EMFILE, "open"), (errno.ENFILE, "open"), (errno.ESTALE, "replace"),
    (errno.ENOTCONN, "write"), (errno.EACCES, "open"), (errno.EPERM, "replace"), (errno.ENAMETOOLONG, "open"),
    (errno.EFBIG, "write"), (errno.EINVAL, "write"), (errno.ENOSPC, "replace"), (errno.EIO, "replace"),
])
def test_file_errors_follow_the_errno_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int,
                                            step: str) -> None:
    """One class, one failure injected at one step: the outcome follows the table, nothing half is left."""
    folder = tmp_path / "out"
    sink = FileAdapter(FileConfig(directory=folder))
    real = {"write": os.write, "fsync": os.fsync, "replace": os.replace, "open": os.open}

    def failing(*args: Any, **kwargs: Any) -> Any:
        if step != "open" or str(args[0]).endswith(".tmp"):
            raise OSError(code, os.strerror(code))
        return real["open"](*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, step, failing)
        expected = Retriable if code in RETRIABLE_ERRNOS else Permanent
        with pytest.raises(expected) as info:
            sink.deliver(request(key="xhub-m1-t"))
    assert type(info.value) is expected and info.value.detail["errno"] == errno.errorcode[code]
    assert leftovers(folder) == [] and not (folder / "xhub-m1-t.xml").exists()
    assert sink.deliver(request(key="xhub-m1-t")).excerpt == "written 4 bytes"  # heals, same key


@contextmanager
def tiny_tmpfs(mount_point: Path, size: str = "64k") -> Iterator[Path]:
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_is_retriable_and_leaves_nothing(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "mnt") as mnt:
        sink = FileAdapter(FileConfig(directory=mnt / "out"))
        with pytest.raises(Retriable, match=r"No space left on device \(ENOSPC\)"):
            sink.deliver(request(b"x" * 200_000))
        assert leftovers(mnt / "out") == []
        assert sink.deliver(request(b"<small/>")).excerpt == "written 8 bytes"


def test_a_read_only_file_system_is_retriable(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "mnt") as mnt:
        (mnt / "out").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        sink = FileAdapter(FileConfig(directory=mnt / "out"))
        with pytest.raises(Retriable, match=r"\(EROFS\)"):
            sink.deliver(request())
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        assert sink.deliver(request()).excerpt == "written 4 bytes"


def test_an_immutable_folder_is_permanent(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        with pytest.raises(Permanent, match=r"\(EPERM\)"):
            FileAdapter(FileConfig(directory=folder)).deliver(request())
        assert leftovers(folder) == []
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert FileAdapter(FileConfig(directory=folder)).deliver(request()).excerpt == "written 4 bytes"


def test_a_file_size_limit_is_permanent(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # Python ignores SIGXFSZ: the write fails with EFBIG
    try:
        with pytest.raises(Permanent, match=r"\(EFBIG\)"):
            FileAdapter(FileConfig(directory=tmp_path)).deliver(request(b"x" * 10_000))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("squatter", ["directory", "symlink", "fifo"])
def test_something_else_under_the_name_is_permanent(tmp_path: Path, squatter: str) -> None:
    target = tmp_path / "xhub-m1-t.xml"
    {"directory": target.mkdir, "symlink": lambda: target.symlink_to("/etc/passwd"),
     "fifo": lambda: os.mkfifo(target)}[squatter]()
    with pytest.raises(Permanent, match="not a regular file"):
        FileAdapter(FileConfig(directory=tmp_path)).deliver(request(key="xhub-m1-t"))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("key", ["../escape", "x" * 300, ".hidden"])
def test_keys_that_are_not_file_names(tmp_path: Path, key: str) -> None:
    with pytest.raises(Permanent):
        FileAdapter(FileConfig(directory=tmp_path / "out")).deliver(request(key=key))
    assert not (tmp_path / "escape.xml").exists() and leftovers(tmp_path / "out") == []


def test_a_full_disk_opens_the_breaker_and_the_messages_wait(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """Through the worker: ENOSPC counts for the circuit breaker; no message is dead; all arrive later."""
    with tiny_tmpfs(tmp_path / "mnt", "256k") as mnt:
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk up to the last block
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        config = hub_config(db_url, tmp_path, targets={"drop": {
            "adapter": "file", "directory": str(mnt), "circuit": {"failure_threshold": 2, "cooldown_seconds": 600}}},
            routes=[{"name": "all", "targets": ["drop"]}])
        ids = accept_many(engine, 3)
        make_worker(config, engine).run(max_messages=3)
        (state,) = target_overview(engine, config.targets)
        assert state["circuit"] == "open" and "ENOSPC" in state["last_error"]
        assert {store.get(engine, m).status for m in ids} == {"retry_wait"}  # type: ignore[union-attr]
        assert leftovers(mnt) == []

        filler.unlink()  # space is freed; the cool-down is over
        with engine.begin() as conn:
            conn.execute(update(TargetState).values(open_until=utcnow()))
            conn.execute(update(Message).values(next_attempt_at=utcnow()))
        make_worker(config, engine).run(exit_when_idle=True)
        assert {store.get(engine, m).status for m in ids} == {"acknowledged"}  # type: ignore[union-attr]
        assert sorted(p.name for p in mnt.iterdir()) == sorted(f"xhub-{m}-drop.xml" for m in ids)
    shutil.rmtree(tmp_path / "mnt", ignore_errors=True)
