"""The mapping engine: declarative rules (TOML) and XSLT that turn a source message into a target body.

::

    from hub.mapping import load_mappings
    mappings = load_mappings(Path("mappings"))          # every mappings/<name>/mapping.toml, compiled once
    rendered = mappings["vehicle-registration-to-registry"].render(payload, context={"message_id": …})
    rendered.body, rendered.content_type, rendered.data

Modules: :mod:`~hub.mapping.mapping` (load, render, goldens), :mod:`~hub.mapping.namespaces` (prefixes
and their alternatives), :mod:`~hub.mapping.compile` (TOML → rules), :mod:`~hub.mapping.rules` (evaluation),
:mod:`~hub.mapping.xpath`, :mod:`~hub.mapping.convert`, :mod:`~hub.mapping.jsontree` (JSON sources),
:mod:`~hub.mapping.xslt`, :mod:`~hub.mapping.golden` (golden-file checks). The language is documented in
docs/mappings.md. Exceptions: see :mod:`hub.mapping.errors`.
"""

from __future__ import annotations

from hub.mapping.errors import MappingError, MappingFailed
from hub.mapping.mapping import Mapping, Rendered, load_mapping, load_mappings

__all__ = ["Mapping", "MappingError", "MappingFailed", "Rendered", "load_mapping", "load_mappings"]
