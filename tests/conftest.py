"""Database fixtures: every store test runs on SQLite and on a real PostgreSQL.

PostgreSQL: one template database is migrated per test session; each test gets its own clone
(``CREATE DATABASE … TEMPLATE …``) and drops it afterwards. The server is ``HUB_TEST_POSTGRES_URL``
(default: the local one). Without a server the PostgreSQL tests are skipped, unless
``HUB_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns that into a failure, and fails the run
when no PostgreSQL test passed at all.

Browser tests (marker ``browser``, :func:`chromium`) drive Debian's Chromium through Playwright. Without
Chromium or Playwright they are skipped, unless ``HUB_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which turns
that into a failure, and fails the run when no browser test passed at all.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from hub import migrate
from hub.db import make_engine, normalise_url

PG_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("HUB_REQUIRE_POSTGRES") == "1"
REQUIRE_BROWSER = os.environ.get("HUB_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("HUB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
TEMPLATE = f"xhub_test_template_{os.getpid()}"

_pg_passed = 0
_browser_passed = 0


def _admin() -> Engine:
    return create_engine(normalise_url(PG_URL), isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """tests/fixtures/xoev: copies of the reference samples (provenance in its SOURCES.md)."""
    return Path(__file__).resolve().parent / "fixtures" / "xoev"


@pytest.fixture(scope="session")
def xsd_dir() -> Path:
    """The shipped schema bundles."""
    return Path(__file__).resolve().parents[1] / "xsd"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[Engine]:
    admin = _admin()
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any connection failure means "no server here"
        admin.dispose()
        message = f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}"
        if REQUIRE_PG:
            pytest.fail(message + " (HUB_REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE}"'))
        conn.execute(text(f'CREATE DATABASE "{TEMPLATE}"'))
    engine = make_engine(str(normalise_url(PG_URL).set(database=TEMPLATE)))
    migrate.upgrade(engine)
    engine.dispose()
    yield admin
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_template: Engine) -> Iterator[str]:
    name = f"xhub_test_{uuid.uuid4().hex[:12]}"
    with pg_template.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'))
    yield normalise_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with pg_template.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "hub.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "hub.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def backend(url: str) -> str:
    return make_url(url).get_backend_name()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (which cannot download a browser of its own here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _no_browser(f"Playwright is not installed: {exc}")
    if not Path(CHROMIUM).is_file():
        _no_browser(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _no_browser(message: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(message + " (HUB_REQUIRE_BROWSER=1)")
    pytest.skip(message)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    global _pg_passed, _browser_passed
    report = yield
    if report.when == "call" and report.passed and item.get_closest_marker("postgres"):
        _pg_passed += 1
    if report.when == "call" and report.passed and item.get_closest_marker("browser"):
        _browser_passed += 1
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    selected = any(i.get_closest_marker("postgres") for i in session.items)
    ran = not session.config.option.collectonly  # a --collect-only run (the tally in docs/security.md) runs none
    if REQUIRE_PG and ran and selected and _pg_passed == 0 and exitstatus == 0:
        session.exitstatus = 1
        print("\nHUB_REQUIRE_POSTGRES=1 but no PostgreSQL test passed: failing the run")
    browsers = any(i.get_closest_marker("browser") for i in session.items)
    if REQUIRE_BROWSER and ran and browsers and _browser_passed == 0 and session.exitstatus == 0:
        session.exitstatus = 1
        print("\nHUB_REQUIRE_BROWSER=1 but no browser test passed: failing the run")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(f"PostgreSQL tests passed: {_pg_passed}")
    terminalreporter.write_line(f"Browser tests passed: {_browser_passed}")
