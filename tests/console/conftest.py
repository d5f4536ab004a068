from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.console.world import World, console_config, seed
from tests.support import running
from xhub.api.app import create_app


@pytest.fixture
def world(engine: Engine, db_url: str, tmp_path: Path) -> World:
    return seed(console_config(db_url, tmp_path), engine)


@pytest.fixture
def hub_url(world: World) -> Iterator[str]:
    with running(create_app(world.config, world.engine)) as url:
        yield url
