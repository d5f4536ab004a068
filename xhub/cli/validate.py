"""``xhub validate`` and ``xhub schemas``: the validation commands of :mod:`hub.validation.cli`, with the schema
folder of the xhub configuration (the core cannot import the command line, so it is handed over here)."""

from __future__ import annotations

from hub.validation import cli as validation_cli
from hub.validation.cli import schemas_app, validate_command
from xhub.cli import common

__all__ = ["schemas_app", "validate_command"]

validation_cli.configured_schema_dir = lambda: common.config().schema_dir
