"""Door: the ``xhub`` command line (arguments, files, the database URL, ``xhub submit`` talking to a hub).

Attacks and accidents covered: database URLs that do not parse, name another database or driver, point at
a closed port, a server that refuses the password, a folder, a file that is no database or an empty one
(always one line ``xhub: …``, exit 2, no traceback, no password); read-only commands on a missing
database (nothing is created, not even the folder); message ids that are no UUIDs (long, empty,
control characters); ``--metadata`` that is not JSON, not an object, nested, duplicated, of the wrong
type or with unknown keys; message files that are FIFOs, folders or too big; ``xhub submit`` with a token
that would break the header, a wrong token, an unreachable hub, a proxy that echoes the Authorization
header, a "hub" that answers nonsense, files that are too big or not files; option values that would
end up in the configuration or the audit trail (``token new --name``, ``requeue --reason``). After each
case the same command works when given something normal. A representative subset runs as real processes.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response
from typer.testing import CliRunner

from hub import migrate
from hub.db import make_engine
from tests.support import SENDER_TOKEN, XBAU_VALID, hub_config, running
from xhub.api.app import create_app
from xhub.cli import app

PASSWORD = "S3cretPW-42"
runner = CliRunner()


def xhub(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``xhub`` in this process (typer's runner), from ``cwd``; returns exit code, stdout, stderr."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(app, ["--log-level", "error", *args], env=env)
    finally:
        os.chdir(old)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


def process(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``xhub`` as a real process."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("XHUB_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "xhub", "--log-level", "error", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def config_with(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def refusing_postgres() -> Iterator[int]:
    """A loopback server speaking just enough of the PostgreSQL protocol to refuse a password (the local
    test server trusts every connection, so a real refusal needs its own server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    refusal = b"SFATAL\0C28P01\0Mpassword authentication failed for user \"hub\"\0\0"

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while True:
                    head = conn.recv(8)
                    if len(head) < 8:
                        break
                    length, code = struct.unpack("!ii", head)
                    conn.recv(length - 8)
                    if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: "no"
                        conn.sendall(b"N")
                        continue
                    conn.sendall(b"E" + struct.pack("!i", len(refusal) + 4) + refusal)
                    break

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


# -- database URLs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    (f"postgresql//hub:{PASSWORD}@db/hub", "xhub: database URL 'postgresql//hub:***@db/hub' cannot be parsed; "
                                          "expected sqlite:///PATH or postgresql://USER@HOST/DATABASE"),
    (f"mysql://hub:{PASSWORD}@db/hub", "xhub: database URL 'mysql://hub:***@db/hub': the hub does not run on 'mysql'"),
    (f"postgresql+psycopg2://hub:{PASSWORD}@db/hub", "driver 'psycopg2' is not supported; use postgresql+psycopg"),
    (f"sqlite://hub:{PASSWORD}@db/hub.db", "a SQLite URL names a file, not a host"),
    (f"postgresql://hub:{PASSWORD}@127.0.0.1:1/hub", "xhub: database postgresql://hub:***@127.0.0.1:1/hub: "
                                                    "connection failed: connection to server at \"127.0.0.1\", port 1 "
                                                    "failed: Connection refused"),
    ("refusing", "password authentication failed for user \"hub\""),
])
@pytest.mark.parametrize("command", [("messages", "list"), ("db", "current"), ("db", "upgrade")])
def test_bad_database_urls_are_one_line_without_the_password(tmp_path: Path, refusing_postgres: int, url: str,
                                                             expected: str, command: tuple[str, ...]) -> None:
    if url == "refusing":
        url = f"postgresql://hub:{PASSWORD}@127.0.0.1:{refusing_postgres}/hub"
    garbage = url.startswith("postgresql//")
    if garbage:  # the environment variable also wins over the file
        code, out, err = xhub("-c", str(config_with(tmp_path, "sqlite:///x.db")), *command, cwd=tmp_path,
                              env={"XHUB_DATABASE__URL": url})
    else:
        code, out, err = xhub("-c", str(config_with(tmp_path, url)), *command, cwd=tmp_path)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert PASSWORD not in out + err and list(tmp_path.iterdir()) == [tmp_path / "hub.toml"]


@pytest.mark.parametrize(("kind", "expected"), [
    ("folder", "no database at {path}; run `xhub db upgrade` or `xhub serve` to create it"),
    ("not-a-database", "xhub: database sqlite:///{path}: file is not a database"),
    ("empty", "the database schema is at nothing (an empty database), this hub needs"),
])
def test_sqlite_files_that_are_no_hub_database(tmp_path: Path, kind: str, expected: str) -> None:
    path = tmp_path / "hub.db"
    if kind == "folder":
        path.mkdir()
    elif kind == "not-a-database":
        path.write_bytes(b"this is not SQLite" * 100)
    else:
        path.touch()
    code, _, err = xhub("-c", str(config_with(tmp_path, f"sqlite:///{path}")), "messages", "list", cwd=tmp_path)
    assert code == 2 and expected.format(path=path) in err
    if kind == "empty":
        assert path.stat().st_size == 0  # looked at, not changed


READ_ONLY = [("messages", "list"), ("messages", "show", str(uuid.uuid4())), ("targets",), ("db", "current"),
             ("messages", "requeue", str(uuid.uuid4()))]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("where", ["default", "deep"])
def test_commands_on_a_missing_database_create_nothing(tmp_path: Path, command: tuple[str, ...],
                                                       where: str) -> None:
    args: tuple[str, ...] = ()
    db = tmp_path / "var" / "hub.db"
    if where == "deep":
        db = tmp_path / "deep" / "er" / "hub.db"
        args = ("-c", str(config_with(tmp_path, f"sqlite:///{db}")))
    code, _, err = xhub(*args, *command, cwd=tmp_path)
    assert code == 2 and f"no database at {db if where == 'deep' else 'var/hub.db'}; run `xhub db upgrade`" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["hub.toml"] if where == "deep" else [])
    # The normal way: create it, then the same command answers.
    assert xhub(*args, "db", "upgrade", cwd=tmp_path)[0] == 0 and db.is_file()
    assert xhub(*args, *command, cwd=tmp_path)[0] in (0, 1)  # 1: show/requeue of an unknown message


def test_rules_check_and_route_need_no_database(tmp_path: Path) -> None:
    code, _, err = xhub("rules", "check", cwd=tmp_path)
    assert code == 2 and "no rules folder mappings (rules_dir)" in err
    code, out, _ = xhub("route", str(XBAU_VALID), cwd=tmp_path)
    assert code == 1 and "no route matches" in out
    assert list(tmp_path.iterdir()) == []
    shipped = Path(__file__).resolve().parents[2] / "mappings"
    code, out, err = xhub("rules", "check", "--rules-dir", str(shipped), cwd=tmp_path)
    assert code == 0 and "5 route(s)" in out and "target 'kfz-register' is not configured here" in err


def test_as_real_processes(tmp_path: Path, refusing_postgres: int) -> None:
    missing = process("messages", "list", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip() == ("xhub: no database at var/hub.db; run `xhub db "
                                                                  "upgrade` or `xhub serve` to create it")
    refused = process("db", "current", cwd=tmp_path,
                      env={"XHUB_DATABASE__URL": f"postgresql://hub:{PASSWORD}@127.0.0.1:{refusing_postgres}/hub"})
    assert refused.returncode == 2 and PASSWORD not in refused.stderr and "password authentication" in refused.stderr
    assert list(tmp_path.iterdir()) == []
    assert process("db", "upgrade", cwd=tmp_path).returncode == 0
    assert process("messages", "list", cwd=tmp_path).returncode == 0


# -- message ids, --metadata, files ------------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Path:
    engine = make_engine(f"sqlite:///{tmp_path / 'var' / 'hub.db'}")
    migrate.upgrade(engine)
    engine.dispose()
    return tmp_path


@pytest.mark.parametrize(("value", "expected"), [
    ("123", "xhub: '123' is not a message id (a UUID)"),
    ("", "xhub: '' is not a message id (a UUID)"),
    ("../../etc/passwd", "xhub: '../../etc/passwd' is not a message id"),
    ("x" * 100_000, "xhub: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'… (100000 characters) is not a message id"),
    ("\x1b[31mred\n", "xhub: '\\x1b[31mred\\n' is not a message id"),
])
@pytest.mark.parametrize("command", ["show", "requeue"])
def test_bad_message_ids(database: Path, value: str, expected: str, command: str) -> None:
    code, _, err = xhub("messages", command, value, cwd=database)
    assert code == 2 and err.strip() == expected + (" (a UUID)" if "(a UUID)" not in expected else "")
    assert xhub("messages", command, str(uuid.uuid4()), cwd=database)[0] == 1  # a real id: "no such message"


@pytest.mark.parametrize(("metadata", "expected"), [
    ("not json", "--metadata is not usable JSON"),
    ("[1, 2]", "--metadata must be a JSON object"),
    ('{"tenant": 1}', "--metadata: tenant must be a string or a list of strings"),
    ('{"tenant": ["a", {"b": 1}]}', "--metadata: tenant must be a string or a list of strings"),
    ('{"tennant": "x"}', "--metadata: unknown key 'tennant'; the keys are tenant, channel"),
    ('{"tenant": "a", "tenant": "b"}', "--metadata is not usable JSON: the key 'tenant' appears twice"),
    ('{"region": ' + "[" * 100 + "]" * 100 + "}", "--metadata is not usable JSON"),
    ('{"tenant": NaN}', "--metadata is not usable JSON"),
    ('{"tenant": "' + "x" * 100_000 + '"}', "--metadata is not usable JSON"),
])
def test_bad_metadata(tmp_path: Path, metadata: str, expected: str) -> None:
    message = tmp_path / "application.json"  # JSON: routed on the given facts alone, without validation
    message.write_text('{"antrag": 1}')
    code, _, err = xhub("route", str(message), "--metadata", metadata, cwd=tmp_path)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    code, out, _ = xhub("route", str(message), "--metadata", '{"tenant": "memmingen"}', cwd=tmp_path)
    assert code == 1 and "facts: tenant=memmingen" in out


@pytest.mark.parametrize(("kind", "expected"), [
    ("fifo", "the message must be a regular file, not a FIFO"),
    ("folder", "the message must be a regular file, not a directory"),
    ("huge", "the message is 10485761 bytes; the limit is 10485760"),
    ("missing", "cannot read the message: No such file or directory"),
])
def test_route_refuses_files_that_are_not_messages(tmp_path: Path, kind: str, expected: str) -> None:
    path = tmp_path / "message.xml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "huge":
        with open(path, "wb") as fh:
            fh.truncate(10 * 1024 * 1024 + 1)
    code, _, err = xhub("route", str(path), cwd=tmp_path)
    assert code == 2 and err.strip() == f"xhub: {path}: {expected}"


# -- xhub submit ----------------------------------------------------------------------------------------------------


def echoing_proxy() -> FastAPI:
    """A broken proxy: quotes the request's headers back (some error pages do); and a "hub" without ids."""
    proxy = FastAPI()

    @proxy.post("/echo/api/v1/messages")
    async def echo(request: Request) -> Response:
        return Response(f"Bad gateway for {dict(request.headers)}", status_code=502, media_type="text/html")

    @proxy.post("/nonsense/api/v1/messages")
    async def nonsense() -> Response:
        return Response("[1, 2, 3]", status_code=202, media_type="application/json")

    return proxy


@pytest.fixture(scope="module")
def hub_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("hub")
    url = f"sqlite:///{folder / 'hub.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    with running(create_app(hub_config(url, folder), engine)) as base:
        yield base
    engine.dispose()


@pytest.fixture(scope="module")
def proxy_url() -> Iterator[str]:
    with running(echoing_proxy()) as base:
        yield base


def submit(tmp_path: Path, url: str, token: str, *files: Path | str, max_bytes: int | None = None) -> tuple[int, str]:
    extra = ("--max-bytes", str(max_bytes)) if max_bytes else ()
    code, out, err = xhub("submit", "--url", url, *extra, *map(str, files), cwd=tmp_path, env={"XHUB_TOKEN": token})
    return code, out + err


@pytest.mark.parametrize("token", ["abc\ndef-SECRET", "t\u00f6k\u00e9n-SECRET", "Bearer SECRET", "a b SECRET",
                                   "SECRET\x7f"])
def test_a_token_that_would_break_the_header_is_refused_unsent(tmp_path: Path, hub_url: str, token: str) -> None:
    code, output = submit(tmp_path, hub_url, token, XBAU_VALID)
    assert code == 2 and "xhub: the token is not a bearer token" in output and "SECRET" not in output


def test_a_wrong_token_is_refused_by_the_hub_and_not_echoed(tmp_path: Path, hub_url: str) -> None:
    code, output = submit(tmp_path, hub_url, "wrong-SECRET-token", XBAU_VALID)
    assert code == 1 and "refused 401" in output and "SECRET" not in output
    code, output = submit(tmp_path, hub_url, SENDER_TOKEN, XBAU_VALID)
    assert code == 0 and ("received" in output or "already submitted" in output)


@pytest.mark.parametrize(("url", "expected"), [
    ("http://hub:pw-SECRET@127.0.0.1:1", "xhub: cannot reach http://hub:***@127.0.0.1:1: ConnectError"),
    ("http://127.0.0.1:1/?token=SECRET", "xhub: cannot reach http://127.0.0.1:1/?token=***: ConnectError"),
    ("ftp://127.0.0.1/", "xhub: --url ftp://127.0.0.1/ is not an http(s) URL of the hub"),
    ("not a url", "xhub: --url not a url is not an http(s) URL of the hub"),
    ("http://[::1", "xhub: --url (unparseable URL) is not a URL"),
])
def test_an_unreachable_or_unusable_hub(tmp_path: Path, url: str, expected: str) -> None:
    code, output = submit(tmp_path, url, "good-SECRET-token", XBAU_VALID)
    assert code == 2 and output.startswith(expected) and "SECRET" not in output, output


def test_a_proxy_that_echoes_the_token(tmp_path: Path, proxy_url: str) -> None:
    code, output = submit(tmp_path, f"{proxy_url}/echo", "good-SECRET-token", XBAU_VALID)
    assert code == 1 and "refused 502" in output and "Bearer ***" in output and "SECRET" not in output
    code, output = submit(tmp_path, f"{proxy_url}/nonsense", "good-SECRET-token", XBAU_VALID)
    assert code == 1 and "the hub answered 202 without a message id; is --url the hub?" in output


@pytest.mark.parametrize(("kind", "expected"), [
    ("huge", "the file is 2048 bytes; the limit is 1024"),
    ("fifo", "the file must be a regular file, not a FIFO"),
    ("folder", "the file must be a regular file, not a directory"),
    ("missing", "cannot read the file: No such file or directory"),
])
def test_files_that_cannot_be_sent_do_not_stop_the_others(tmp_path: Path, hub_url: str, kind: str,
                                                         expected: str) -> None:
    bad = tmp_path / "bad.xml"
    if kind == "huge":
        bad.write_bytes(b"<a>" + b"x" * 2041 + b"</a>")
    elif kind == "fifo":
        os.mkfifo(bad)
    elif kind == "folder":
        bad.mkdir()
    good = tmp_path / "good.xml"
    good.write_bytes(f"<a>{uuid.uuid4()}</a>".encode())
    code, output = submit(tmp_path, hub_url, SENDER_TOKEN, bad, good, max_bytes=1024)
    assert code == 1 and f"not sent: {bad}: {expected}" in output
    assert f"{good}: " in output and " received" in output  # the next file still went in


def test_submit_as_a_real_process(tmp_path: Path, hub_url: str) -> None:
    bad = process("submit", "--url", hub_url, str(XBAU_VALID), cwd=tmp_path, env={"XHUB_TOKEN": "a\tSECRET"})
    assert bad.returncode == 2 and "SECRET" not in bad.stderr + bad.stdout
    ok = process("submit", "--url", hub_url, str(XBAU_VALID), cwd=tmp_path, env={"XHUB_TOKEN": SENDER_TOKEN})
    assert ok.returncode == 0, ok.stdout + ok.stderr


# -- option values that end up in configuration or the trail ----------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (("token", "new", "--name", 'x"\nadmin = true', "--tenant", "memmingen"), "--name: String should match pattern"),
    (("token", "new", "--name", "portal", "--tenant", "../x"), "--tenant: String should match pattern"),
    (("token", "new", "--name", "portal"), "xhub: a sender token needs --tenant"),
    (("messages", "requeue", str(uuid.uuid4()), "--reason", "line\nbreak"), "--reason must be at most 1000 printable"),
    (("messages", "requeue", str(uuid.uuid4()), "--operator", "x" * 101), "--operator must be 1-100 printable"),
    (("keys", "generate", "--out", "k", "--name", "x", "--bits", "2048"), "at least 4096 bits"),
    (("keys", "generate", "--out", "k", "--name", "x", "--bits", "100000"), "Invalid value for '--bits'"),
    (("--log-level", "garbage", "targets"), "Invalid value for '--log-level'"),
    (("demo", "--port", "70000"), "Invalid value for '--port'"),
])
def test_option_values_are_checked(database: Path, args: tuple[str, ...], expected: str) -> None:
    code, out, err = xhub(*args, cwd=database)
    assert code == 2 and expected in out + err
    assert not (database / "k").exists()


def test_token_new_prints_lines_the_configuration_accepts(tmp_path: Path) -> None:
    code, out, _ = xhub("token", "new", "--name", "portal-bw", "--tenant", "memmingen", cwd=tmp_path)
    assert code == 0
    config = tmp_path / "hub.toml"
    config.write_text(out.split("\n\n", 1)[1])
    assert xhub("-c", str(config), "targets", cwd=tmp_path)[2].startswith("xhub: no database at var/hub.db")


@pytest.mark.parametrize("workdir", ["home", "file", "symlink"])
def test_the_demo_never_empties_a_folder_it_did_not_make(tmp_path: Path, workdir: str) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    target = {"home": precious, "file": precious / "thesis.tex", "symlink": tmp_path / "link"}[workdir]
    if workdir == "symlink":
        target.symlink_to(precious)
    code, _, err = xhub("demo", "--once", "--port", "0", "--workdir", str(target), cwd=tmp_path)
    assert code == 2 and err.startswith(f"xhub: --workdir {target} ")
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_read_only_commands_on_both_backends(db_url: str, tmp_path: Path) -> None:
    """The read-only engine reads everything the commands need, and can write nothing."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from hub import store

    engine = make_engine(db_url)
    message, _ = store.accept(engine, store.NewMessage("memmingen", "rest", "portal", [
        store.Part("payload", "application/xml", XBAU_VALID.read_bytes())]), actor="sender:portal")
    engine.dispose()
    config = tmp_path / "hub.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n\n[targets.outbox]\nadapter = "file"\ndirectory = "out"\n')
    for command, expected in [(("messages", "list"), str(message.id)), (("messages", "show", str(message.id)),
                              "status    received"), (("targets",), "outbox"), (("db", "current"), "code: ")]:
        code, out, err = xhub("-c", str(config), *command, cwd=tmp_path)
        assert code == 0 and expected in out, err
    reader = make_engine(db_url, read_only=True)
    with pytest.raises(SQLAlchemyError), reader.begin() as conn:
        conn.execute(text("DELETE FROM messages"))
    reader.dispose()
