"""JSON → XML tree, so one XPath-based rule language serves JSON and XML sources alike.

The conversion (documented in docs/mappings.md):

* the document becomes ``<json>``; an object's members become child elements in member order;
* a member whose key is not an XML name (``$schema``, ``2fa``, ``a b``) becomes ``<_ key="$schema">``;
* an array becomes one element per item, all with the member's name (``{"p": [1, 2]}`` →
  ``<p>1</p><p>2</p>``), so ``p`` selects every item and ``p[2]`` the second; an array directly inside
  an array (and a top-level array) holds its items as ``<item>`` children; an empty array leaves nothing;
* strings are text; numbers keep their JSON spelling (``1.50`` stays ``1.50``); booleans are ``true`` /
  ``false``; ``null`` is an empty element with ``null="true"`` (its value counts as missing).
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from typing import Any

from lxml import etree

__all__ = ["JsonRejected", "json_to_tree"]

ROOT = "json"
ITEM = "item"
ESCAPED = "_"


class JsonRejected(ValueError):
    """The payload is not a JSON document the engine can map."""


@lru_cache(maxsize=4096)
def _is_xml_name(key: str) -> bool:
    if not key or key.lower().startswith("xml") or ":" in key:
        return False
    try:
        etree.Element(key)
    except ValueError:
        return False
    return True


def _element(parent: etree._Element, key: str) -> etree._Element:
    if _is_xml_name(key):
        return etree.SubElement(parent, key)
    child = etree.SubElement(parent, ESCAPED)
    child.set("key", key)
    return child


def _fill(element: etree._Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, member in value.items():
            _member(element, key, member)
    elif isinstance(value, list):
        for item in value:
            _fill(etree.SubElement(element, ITEM), item)
    elif value is None:
        element.set("null", "true")
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif isinstance(value, str):
        element.text = value
    else:  # int, Decimal: their JSON spelling
        element.text = str(value)


def _member(parent: etree._Element, key: str, value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _fill(_element(parent, key), item)
    else:
        _fill(_element(parent, key), value)


def json_to_tree(payload: bytes, *, max_bytes: int = 50 * 1024 * 1024) -> etree._Element:
    """Parse ``payload`` as JSON and return the ``<json>`` root element, or raise :class:`JsonRejected`."""
    if len(payload) > max_bytes:
        raise JsonRejected(f"the JSON document has {len(payload)} bytes; the limit is {max_bytes}")
    try:
        value = json.loads(payload, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JsonRejected(f"not JSON: {exc}") from None
    except RecursionError:
        raise JsonRejected("the JSON document is nested too deeply") from None
    root = etree.Element(ROOT)
    try:
        _fill(root, value)
    except ValueError as exc:  # lxml refuses text that XML cannot carry (control characters)
        raise JsonRejected(f"the JSON holds text that XML cannot represent: {exc}") from None
    except RecursionError:
        raise JsonRejected("the JSON document is nested too deeply") from None
    return root
