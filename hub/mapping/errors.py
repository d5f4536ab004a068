"""The mapping engine's two exceptions.

::

    ValueError
     └── MappingError    a mapping file is broken: found at load time, never while a message is mapped
    Exception
     └── MappingFailed   this message cannot be mapped by this (valid) mapping: a required value is
                         missing, a conversion or code translation failed, the XSLT terminated

``MappingError`` is the operator's problem (fix the file; the old rule set stays active), ``MappingFailed``
is the message's problem (permanent for this message: retrying cannot help).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MappingError", "MappingFailed"]


class MappingError(ValueError):
    """A broken mapping file. ``str()`` is ``"<file>:<line>: <key path>: <problem>"``."""

    def __init__(self, file: Path | str, line: int | None, key: str, problem: str) -> None:
        self.file = str(file)
        self.line = line
        self.key = key
        self.problem = problem
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class MappingFailed(Exception):
    """This message cannot be mapped. ``field`` is the target field (dotted, with list indexes) or None."""

    def __init__(self, mapping: str, field: str | None, problem: str) -> None:
        self.mapping = mapping
        self.field = field
        self.problem = problem
        super().__init__(f"mapping {mapping}: {field}: {problem}" if field else f"mapping {mapping}: {problem}")
