"""Configuration: defaults, file errors with line numbers, environment overrides, secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.routing import RulesError, load_rules
from xhub.config import ConfigError, load_config

GOOD = """
[database]
url = "sqlite:///var/test.db"

[[senders]]
name = "portal"
tenant = "memmingen"
token_sha256 = "{h}"

[targets.outbox]
adapter = "file"
directory = "var/outbox"

[[routes]]
name = "all"
targets = ["outbox"]
""".replace("{h}", "a" * 64)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config.database.url == "sqlite:///var/hub.db"
    assert config.api.port == 8080 and config.routes == []


def test_good_file_and_env_override(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={"XHUB_DATABASE__URL": "postgresql://db/hub",
                                                     "XHUB_API__PORT": "9000", "XHUB_WORKER__EMBEDDED": "false"})
    assert config.database.url == "postgresql://db/hub"
    assert config.api.port == 9000 and config.worker.embedded is False
    assert config.targets["outbox"].adapter_settings() == {"directory": "var/outbox"}


def test_errors_name_file_key_and_line(tmp_path: Path) -> None:
    bad = GOOD.replace('tenant = "memmingen"', 'tenant = "has space"')
    path = write(tmp_path, bad + '\n[api]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    text = str(info.value)
    assert f"{path}:7: senders[0].tenant" in text
    assert f"{path}:19: api.port" in text


def test_unknown_keys_and_references_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"database\.ulr: unknown key"):
        load_config(write(tmp_path, GOOD.replace("url =", "ulr =")), env={})
    inline = load_config(write(tmp_path, GOOD.replace('targets = ["outbox"]', 'targets = ["dms"]')), env={})
    unknown = r"configuration \[\[routes\]\]: routes\[0\].targets\[0\]: unknown target 'dms'"
    with pytest.raises(RulesError, match=unknown):
        load_rules(inline.model_copy(update={"rules_dir": tmp_path / "no-rules-here"}))


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[database\nurl = 1"), env={})


def test_secret_from_file_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "token.sha256"
    secret.write_text("b" * 64 + "\n")
    text = GOOD.replace(f'token_sha256 = "{"a" * 64}"', f'token_sha256_file = "{secret}"')
    config = load_config(write(tmp_path, text), env={})
    assert config.senders[0].token_sha256.get_secret_value() == "b" * 64
    assert "b" * 64 not in repr(config) and "b" * 64 not in str(config.model_dump())
    missing = text.replace(str(secret), str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read secret file"):
        load_config(write(tmp_path, missing), env={})


def test_bad_hash_is_explained_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace("a" * 64, "my-plain-token")), env={})
    assert "64 lowercase hex" in str(info.value) and "my-plain-token" not in str(info.value)
