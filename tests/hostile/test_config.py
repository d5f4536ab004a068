"""Door: the configuration (``hub.toml``, ``routes.toml``, ``XHUB_*`` environment variables, ``*_file`` secrets).

Attacks and accidents covered: malformed TOML, nesting that would overflow the parser, files that are huge,
not UTF-8, directories, FIFOs or devices; unknown keys at every level (top, sections, senders, operators,
targets, the adapters' own settings and their nested tables, routes, FIT-Connect); wrong types; secret
files that are missing, empty, huge, FIFOs, directories, devices or not UTF-8; environment variables with
garbage values, unknown sections and conflicting paths; unknown adapters, targets without a URL, target
names and suffixes that would leave the drop folder; routes to unknown targets and mappings. Each case
asserts the precise one-line problem (file and line, or the variable) and that no secret value is echoed;
after each one the good configuration still loads and a command still works.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.configfile import FileProblem, read_secret
from hub.routing import RulesError, load_rules
from xhub.cli import app
from xhub.config import ConfigError, HubConfig, load_config

GOOD = """\
rules_dir = "{rules}"

[database]
url = "sqlite:///var/hub.db"

[[senders]]
name = "portal"
tenant = "memmingen"
token_sha256 = "{hash}"

[targets.outbox]
adapter = "file"
directory = "var/outbox"

[targets.registry]
adapter = "rest"
url = "https://registry.example/cases"
oauth2 = {{ token_url = "https://idp.example/token", client_id = "hub", client_secret = "idp-secret" }}

[[routes]]
name = "all"
targets = ["outbox"]
"""
HASH = "ab" * 32
SECRET = "TOPSECRET-value-42"


def good(tmp_path: Path) -> str:
    return GOOD.format(rules=tmp_path / "rules", hash=HASH)


def write(tmp_path: Path, text: str | bytes, name: str = "hub.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def still_works(tmp_path: Path) -> HubConfig:
    """After a refusal, the good configuration loads, and its rules with it."""
    config = load_config(write(tmp_path, good(tmp_path), "good.toml"), env={})
    load_rules(config)
    return config


def refused(tmp_path: Path, text: str | bytes | None = None, env: dict[str, str] | None = None,
            path: Path | None = None) -> str:
    """The problem, one line per key; asserts that no secret leaked and that the hub still loads."""
    if path is None:
        path = write(tmp_path, text if text is not None else good(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    message = str(info.value)
    assert SECRET not in message and "Traceback" not in message
    still_works(tmp_path)
    return message


# -- the file itself ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("[database\nurl = 1\n", "hub.toml: not valid TOML: Expected ']' at the end of a table declaration (at line 1"),
    ("[api]\nport = 1\nport = 2\n", "not valid TOML: Cannot overwrite a value (at line 3"),
    ("a = " + "[" * 100_000 + "]" * 100_000, "not valid TOML: nested more than 32 levels deep"),
    ("a = " + "{b=" * 3000 + "1" + "}" * 3000, "not valid TOML: nested more than 32 levels deep"),
    ("[" + ".".join(["x"] * 3000) + "]\n", "hub.toml: tables or arrays nested more than 32 levels deep"),
    ("\ufeff[api]\nport = 1\n", "not valid TOML"),
])
def test_malformed_toml(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    message = refused(tmp_path, b'[api]\nhost = "127.0.0.1"\n# Gr\xfc\xdfe\n')
    assert message.endswith("hub.toml:3: configuration is not UTF-8 (byte 29)")


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    message = refused(tmp_path, "# " + "x" * (2 * 1024 * 1024) + "\n")
    assert message.endswith("configuration is 2097155 bytes; the limit is 1048576")


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "missing"])
def test_a_configuration_that_is_not_a_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "hub.toml"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it must not wait for a writer
    elif kind == "device":
        path = Path("/dev/zero")
    expected = {"directory": "must be a regular file, not a directory", "fifo": "must be a regular file, not a FIFO",
                "device": "must be a regular file, not a device",
                "missing": "cannot read configuration: No such file or directory"}[kind]
    assert refused(tmp_path, path=path) == f"{path}: configuration {expected}".replace("configuration cannot",
                                                                                       "cannot")


# -- unknown keys at every level ------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "where"), [
    ('rules_dir =', 'ruls_dir =', ":1: ruls_dir: unknown key"),
    ("[database]", "[databse]", ":3: databse: unknown key"),
    ('url = "sqlite', 'ulr = "sqlite', ":4: database.ulr: unknown key"),
    ('tenant = "memmingen"', 'tennant = "memmingen"', ":8: senders[0].tennant: unknown key"),
    ('directory = "var/outbox"', 'directory = "var/outbox"\ndirectroy = "x"',
     ":14: targets.outbox.directroy: unknown key"),
    ('url = "https://registry', 'urll = "https://registry', ":17: targets.registry.urll: unknown key"),
    ('client_id = "hub"', 'client_idd = "hub"', ":18: targets.registry.oauth2.client_idd: unknown key"),
    ('name = "all"', 'name = "all"\nmatch = { standart = "XBau" }', ":22: routes[0].match.standart: unknown key"),
    ('targets = ["outbox"]', 'targets = [{ target = "outbox", maping = "m" }]',
     ":22: routes[0].targets[0].maping: unknown key"),
    ("[[routes]]", "[limits]\njson_max_dept = 3\n\n[[routes]]", ":21: limits.json_max_dept: unknown key"),
    ("[[routes]]", "[[operators]]\nname = \"ops\"\ntenant = \"x\"\ntoken_sha256 = \"" + HASH + "\"\n\n[[routes]]",
     ":22: operators[0].tenant: unknown key"),
    ("[[routes]]", "[targets.outbox.circuit]\nthreshold = 3\n\n[[routes]]",
     ":21: targets.outbox.circuit.threshold: unknown key"),
])
def test_unknown_keys_name_file_line_and_key(tmp_path: Path, old: str, new: str, where: str) -> None:
    message = refused(tmp_path, good(tmp_path).replace(old, new, 1))
    assert f"hub.toml{where}" in message, message


def test_a_secret_under_an_unknown_key_is_not_echoed(tmp_path: Path) -> None:
    message = refused(tmp_path, good(tmp_path) + f'\n[api]\nbearer_token = "{SECRET}"\n')
    assert message.endswith("hub.toml:25: api.bearer_token: unknown key")


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('url = "sqlite:///var/hub.db"', "url = 5", ":4: database.url: Input should be a valid string"),
    ("[database]", "[api]\nport = \"eighty\"\n\n[database]", ":4: api.port: Input should be a valid integer"),
    ("[database]", "[retry]\nmax_attempts = 0\n\n[database]", ":4: retry.max_attempts: Input should be greater"),
    ("[[senders]]", "[worker]\nembedded = 3\n\n[[senders]]", ":7: worker.embedded: Input should be a valid boolean"),
    ('directory = "var/outbox"', 'directory = "var/outbox"\ncircuit = 5',
     ":14: targets.outbox.circuit: Input should be a valid"),
    (f'token_sha256 = "{HASH}"', f'token_sha256 = "{SECRET}"', ":9: senders[0].token_sha256: must be 64 lowercase"),
    ('client_secret = "idp-secret"', "client_secret = 42", ":18: targets.registry.oauth2.client_secret: Input should"),
])
def test_wrong_types(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert f"hub.toml{expected}" in refused(tmp_path, good(tmp_path).replace(old, new, 1))


# -- targets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('adapter = "file"', 'adapter = "smtp"',
     ":12: targets.outbox.adapter: unknown adapter 'smtp'; the known ones are file, rest, soap"),
    ('adapter = "file"\n', "", ":11: targets.outbox.adapter: Field required"),
    ('url = "https://registry.example/cases"\n', "", ":15: targets.registry.url: Field required"),
    ('directory = "var/outbox"', "", ":11: targets.outbox.directory: Field required"),
    ('url = "https://registry.example/cases"', 'url = "ftp://registry.example/cases"',
     ":17: targets.registry.url: String should match pattern"),
    ('url = "https://registry.example/cases"', 'url = "https://registry.example/{secret}"',
     ":17: targets.registry.url: unknown placeholder(s) ['secret']"),
    ("[targets.outbox]", '[targets."../../etc"]', ":11: targets.../../etc: a target name is 1-64 letters"),
    ('directory = "var/outbox"', 'directory = "var/outbox"\nsuffix = "/../../x"',
     ":14: targets.outbox.suffix: String should match pattern"),
    ("[[routes]]", '[targets.kfz]\nadapter = "soap"\nwsdl = "x.wsdl"\n\n[[routes]]',
     ":20: targets.kfz.operation: Field required"),
    ('client_id = "hub", ', "", ":18: targets.registry.oauth2.client_id: Field required"),
])
def test_targets_are_checked_against_their_adapter_when_loaded(tmp_path: Path, old: str, new: str,
                                                               expected: str) -> None:
    message = refused(tmp_path, good(tmp_path).replace(old, new, 1))
    assert f"hub.toml{expected}" in message, message


def test_a_bearer_token_that_would_break_a_header_is_refused_without_echo(tmp_path: Path) -> None:
    text = good(tmp_path).replace('oauth2 = {', f'bearer_token = "{SECRET}\\r\\nX-Evil: 1"\n# oauth2 = {{', 1)
    message = refused(tmp_path, text)
    assert "hub.toml:18: targets.registry.bearer_token: a bearer token is letters, digits" in message


# -- secret files ----------------------------------------------------------------------------------------------


def secret_config(tmp_path: Path, secret_path: Path) -> str:
    return good(tmp_path).replace('client_secret = "idp-secret"', f'client_secret_file = "{secret_path}"')


@pytest.mark.parametrize(("kind", "expected"), [
    ("missing", "cannot read secret file: No such file or directory"),
    ("empty", "the secret file is empty"),
    ("blank", "the secret file is empty"),
    ("huge", "secret file is 70000 bytes; the limit is 65536"),
    ("fifo", "secret file must be a regular file, not a FIFO"),
    ("directory", "secret file must be a regular file, not a directory"),
    ("device", "secret file must be a regular file, not a device"),
    ("latin1", "secret file is not UTF-8 (byte 6)"),  # the reader says line 1 of the secret file
    ("under-a-file", "cannot read secret file: Not a directory"),
])
def test_secret_files(tmp_path: Path, kind: str, expected: str) -> None:
    path = tmp_path / "idp.secret"
    if kind == "empty":
        path.write_text("")
    elif kind == "blank":
        path.write_text(" \n\t\n")
    elif kind == "huge":
        path.write_text(SECRET[0] * 70_000)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "latin1":
        path.write_bytes(b"secret\xe4")
    elif kind == "under-a-file":
        path.write_text(SECRET)
        path = path / "child"
    message = refused(tmp_path, secret_config(tmp_path, path))
    where = f"{path}:1" if kind == "latin1" else str(path)
    assert message == f"{tmp_path / 'hub.toml'}:18: targets.registry.oauth2.client_secret_file: {where}: {expected}"


def test_a_secret_file_is_read_and_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, f"{SECRET}\n", "idp.secret")
    config = load_config(write(tmp_path, secret_config(tmp_path, path)), env={})
    oauth2 = config.targets["registry"].adapter_settings()["oauth2"]
    assert oauth2["client_secret"].get_secret_value() == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config.model_dump())
    both = secret_config(tmp_path, path).replace("client_secret_file", 'client_secret = "x", client_secret_file')
    assert refused(tmp_path, both).endswith("give either client_secret or client_secret_file, not both")


def test_a_secret_in_a_file_that_fails_validation_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, SECRET, "token.sha256")
    text = good(tmp_path).replace(f'token_sha256 = "{HASH}"', f'token_sha256_file = "{path}"')
    message = refused(tmp_path, text)
    assert (f"hub.toml:9 (senders[0].token_sha256_file = {path}): senders[0].token_sha256: must be 64 lowercase "
            "hex") in message


def test_an_unreadable_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root every file is readable, so EACCES is injected into the one reader (a unit of its own)."""
    path = write(tmp_path, SECRET, "idp.secret")

    def denied(*_args: object, **_kwargs: object) -> int:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", denied)
        with pytest.raises(FileProblem) as info:
            read_secret(path)
    assert str(info.value) == f"{path}: cannot read secret file: Permission denied"
    assert read_secret(path) == SECRET


# -- environment variables ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "expected"), [
    ({"XHUB_API__PORT": "abc"}, "environment XHUB_API__PORT: api.port: Input should be a valid integer"),
    ({"XHUB_API__PORT": "99999"}, "environment XHUB_API__PORT: api.port: Input should be less than or equal"),
    ({"XHUB_NOSUCH__KEY": "1"}, "environment XHUB_NOSUCH__KEY: nosuch: unknown key"),
    ({"XHUB_API__PORT": "1", "XHUB_API__PORT__X": "2"}, "environment XHUB_API__PORT__X conflicts with XHUB_API__PORT"),
    ({"XHUB_API____PORT": "1"}, "environment XHUB_API____PORT: an empty key between '__' separators"),
    ({"XHUB_TARGETS__OUTBOX__ADAPTER": "smtp"}, "environment XHUB_TARGETS__OUTBOX__ADAPTER: targets.outbox.adapter: "
                                               "unknown adapter 'smtp'"),
    ({"XHUB_TARGETS__REGISTRY__BEARER_TOKEN": SECRET + "\n"}, "environment XHUB_TARGETS__REGISTRY__BEARER_TOKEN: "),
    ({"XHUB_RULES_DIR": "[1, 2]"}, "environment XHUB_RULES_DIR: rules_dir: Input is not a valid path"),
    ({"XHUB_WORKER__LEASE_SECONDS": "-1"}, "environment XHUB_WORKER__LEASE_SECONDS: worker.lease_seconds: Input "
                                          "should be greater than 0"),
])
def test_environment_overrides_with_garbage(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    assert expected in refused(tmp_path, env=env)


def test_environment_overrides_that_work(tmp_path: Path) -> None:
    deep = "[" * 5000
    config = load_config(write(tmp_path, good(tmp_path)), env={
        "XHUB_API__PORT": '"9000"', "XHUB_DATABASE__URL": deep, "XHUB_URL": "ignored", "XHUB_TOKEN": "ignored",
        "XHUB_SCHEMA_DIR": "/srv/schemas", "XHUB_TARGETS__REGISTRY__URL": "https://other.example/x"})
    assert config.api.port == 9000 and config.database.url == deep and str(config.schema_dir) == "/srv/schemas"
    assert config.targets["registry"].adapter_settings()["url"] == "https://other.example/x"


# -- routes and their references ----------------------------------------------------------------------------------


def rules_error(config: HubConfig) -> str:
    with pytest.raises(RulesError) as info:
        load_rules(config)
    return str(info.value)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('targets = ["outbox"]', 'targets = ["dms"]',
     "configuration [[routes]]: routes[0].targets[0]: unknown target 'dms' (known: outbox, registry)"),
    ('targets = ["outbox"]', 'targets = [{ target = "outbox", mapping = "nope" }]',
     "routes[0].targets[0]: unknown mapping 'nope' (known: none)"),
    ('name = "all"', 'name = "all"\nmatch = { xpath = "//[" }', "routes[0].match.xpath: Invalid expression"),
])
def test_routes_to_unknown_targets_and_mappings(tmp_path: Path, old: str, new: str, expected: str) -> None:
    config = load_config(write(tmp_path, good(tmp_path).replace(old, new, 1)), env={})
    assert expected in rules_error(config)
    still_works(tmp_path)


@pytest.mark.parametrize(("routes", "expected"), [
    ('[[routes]]\nname = "x"\ntargets = ["ghost"]\n', "routes.toml:3: routes[0].targets[0]: unknown target 'ghost'"),
    ('[[routes]]\nname = "x"\ntargets = ["outbox"]\nretry = { max_attempts = -1 }\n',
     "routes.toml:4: routes[0].retry.max_attempts: Input should be greater than or equal to 1"),
    ("# " + "x" * (2 * 1024 * 1024), "routes file is 2097154 bytes; the limit is 1048576"),
    (b"[[routes]]\nname = \"\xff\"\n", "routes.toml:2: routes file is not UTF-8"),
    ("fifo", "routes file must be a regular file, not a FIFO"),
])
def test_a_routes_file_in_the_rules_folder(tmp_path: Path, routes: str | bytes, expected: str) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    if routes == "fifo":
        os.mkfifo(rules / "routes.toml")
    else:
        write(rules, routes, "routes.toml")
    config = load_config(write(tmp_path, good(tmp_path).split("[[routes]]")[0]), env={})
    assert expected in rules_error(config)
    (rules / "routes.toml").unlink()
    still_works(tmp_path)


# -- through the command line --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ('[targets.x]\nadapter = "smtp"\n', ":2: targets.x.adapter: unknown adapter 'smtp'"),
    ('[targets.x]\nadapter = "rest"\n', ":1: targets.x.url: Field required"),
    ("[database\n", "not valid TOML"),
])
def test_the_cli_says_it_in_one_line_per_problem_and_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    bad = write(tmp_path, text)
    result = subprocess.run([sys.executable, "-m", "xhub", "-c", str(bad), "targets"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()
    no_inline_routes = good(tmp_path).split("[[routes]]")[0]
    ok = CliRunner().invoke(app, ["-c", str(write(tmp_path, no_inline_routes, "good.toml")), "rules", "check",
                                  "--rules-dir", str(Path(__file__).resolve().parents[2] / "mappings")])
    assert ok.exit_code == 2 and "unknown target 'bauamt-dms' (known: outbox, registry)" in ok.output
