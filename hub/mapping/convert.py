"""Value conversions and code tables: text taken from the source becomes a typed output value.

Each conversion is a small object compiled from the mapping (type, input formats) whose ``__call__``
turns one string into the output value or raises :class:`ConversionError` with a sentence that says why.
Output values: ``str``, ``int``, :class:`~decimal.Decimal` (written as a JSON number, digits preserved),
``bool``; dates and date-times are written as ISO 8601 strings (or with ``output_format``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal, TypeAlias

__all__ = [
    "TYPES",
    "CodeTable",
    "ConversionError",
    "Converter",
    "OutputValue",
    "ValueType",
]

ValueType = Literal["string", "integer", "decimal", "boolean", "date", "datetime"]
TYPES: tuple[ValueType, ...] = ("string", "integer", "decimal", "boolean", "date", "datetime")
OutputValue: TypeAlias = str | int | Decimal | bool

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})
# Decimal input formats: which character separates thousands and which the fraction.
_DECIMAL_FORMATS = {"en": (",", "."), "de": (".", ",")}


class ConversionError(ValueError):
    """A value that the conversion cannot accept; the message says why, for the operator."""


@dataclass(frozen=True)
class Converter:
    """Turns source text into an output value of one type. ``formats`` are input formats (strptime for
    dates, ``en``/``de`` for decimals); ``output_format`` is a strftime pattern for dates."""

    type: ValueType = "string"
    formats: tuple[str, ...] = ()
    output_format: str | None = None

    def check(self) -> str | None:
        """A problem with the options themselves (reported at load time), or None."""
        if self.type == "decimal":
            unknown = [f for f in self.formats if f not in _DECIMAL_FORMATS]
            if unknown:
                return f"decimal format {unknown[0]!r} is not one of {sorted(_DECIMAL_FORMATS)}"
        elif self.type not in ("date", "datetime") and self.formats:
            return f"format is for date, datetime and decimal values, not {self.type}"
        if self.output_format is not None and self.type not in ("date", "datetime"):
            return f"output_format is for date and datetime values, not {self.type}"
        return None

    def __call__(self, text: str) -> OutputValue:
        if self.type == "string":
            return text
        if self.type == "integer":
            if not _INTEGER.fullmatch(text):
                raise ConversionError(f"{text!r} is not an integer")
            return int(text)
        if self.type == "decimal":
            return self._decimal(text)
        if self.type == "boolean":
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ConversionError(f"{text!r} is not a boolean (true, false, 1, 0)")
        if self.type == "date":
            day = self._date(text)
            return day.strftime(self.output_format) if self.output_format else day.isoformat()
        moment = self._datetime(text)
        return moment.strftime(self.output_format) if self.output_format else moment.isoformat()

    def _decimal(self, text: str) -> Decimal:
        for name in self.formats or ("en",):
            thousands, fraction = _DECIMAL_FORMATS[name]
            candidate = text.replace(thousands, "").replace(fraction, ".")
            if _DECIMAL.fullmatch(candidate):
                try:
                    return Decimal(candidate)
                except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
                    continue
        raise ConversionError(f"{text!r} is not a decimal number ({', '.join(self.formats or ('en',))} format)")

    def _date(self, text: str) -> date:
        if not self.formats:
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise ConversionError(f"{text!r} is not an ISO date (YYYY-MM-DD)") from None
        for fmt in self.formats:
            try:
                return datetime.strptime(text, fmt).date()
            except ValueError:
                continue
        raise ConversionError(f"{text!r} is not a date in format {' or '.join(self.formats)}")

    def _datetime(self, text: str) -> datetime:
        if not self.formats:
            try:
                return datetime.fromisoformat(text)
            except ValueError:
                raise ConversionError(f"{text!r} is not an ISO 8601 date-time") from None
        for fmt in self.formats:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
        raise ConversionError(f"{text!r} is not a date-time in format {' or '.join(self.formats)}")


@dataclass(frozen=True)
class CodeTable:
    """A code translation: source code → target code. An unknown code gives ``default`` when the table
    has one, the code itself when ``passthrough`` is set, and a :class:`ConversionError` otherwise."""

    name: str
    values: Mapping[str, str]
    default: str | None = None
    passthrough: bool = False

    def __call__(self, code: str) -> str:
        found = self.values.get(code)
        if found is not None:
            return found
        if self.default is not None:
            return self.default
        if self.passthrough:
            return code
        known = ", ".join(sorted(self.values)[:10])
        more = ", …" if len(self.values) > 10 else ""
        raise ConversionError(f"code {code!r} is not in table {self.name!r} (known: {known}{more})")
