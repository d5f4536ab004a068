"""The rule language on small documents: values, objects, lists, conditions, defaults, tables, context."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from hub.mapping import MappingFailed
from tests.unit.mapping.conftest import MakeMapping

XML = b"""<?xml version="1.0"?>
<a:order xmlns:a="urn:example:a" id="o-7">
  <a:date>24.12.2024</a:date>
  <a:paid>1</a:paid>
  <a:total>1.234,50</a:total>
  <a:customer><a:name> Ada  Lovelace </a:name><a:country>DE</a:country></a:customer>
  <a:item sku="x1"><a:qty>2</a:qty><a:tags>red|big</a:tags></a:item>
  <a:item sku="x2"><a:qty>5</a:qty></a:item>
  <a:note/>
</a:order>"""

HEADER = """
[mapping]
source = "xml"
output = "json"
[namespaces]
a = "urn:example:a"
"""


def render(mapping: object, payload: bytes = XML, **context: str | None) -> dict[str, object]:
    from hub.mapping import Mapping

    assert isinstance(mapping, Mapping)
    rendered = mapping.render(payload, context=context)
    assert rendered.content_type == "application/json"
    assert json.loads(rendered.body, parse_float=Decimal) == rendered.data
    assert isinstance(rendered.data, dict)
    return rendered.data


def test_values_conversions_and_nesting(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields]
id = "@id"
date = { xpath = "a:date", type = "date", format = "%d.%m.%Y" }
paid = { xpath = "a:paid", type = "boolean" }
total = { xpath = "a:total", type = "decimal", format = "de" }
count = { xpath = "count(a:item)", type = "integer" }
customer.name = "a:customer/a:name"
customer.address.country = "a:customer/a:country"
fixed = 42
ratio = 0.5
""")
    assert render(m) == {
        "id": "o-7", "date": "2024-12-24", "paid": True, "total": Decimal("1234.50"), "count": 2,
        "customer": {"name": "Ada  Lovelace", "address": {"country": "DE"}}, "fixed": 42, "ratio": Decimal("0.5"),
    }
    assert b'"total":1234.50' in m.render(XML, context={}).body


def test_missing_optional_values_and_empty_objects_are_left_out(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields]
id = "@id"
note = "a:note"
nothing.deeper = "a:absent"
""")
    assert render(m) == {"id": "o-7"}


def test_required_value_names_the_field(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields]
customer.email = { xpath = "a:customer/a:email", required = true }
""")
    with pytest.raises(MappingFailed) as caught:
        render(m)
    assert caught.value.field == "customer.email"
    assert "'a:customer/a:email' gave no value" in str(caught.value)


def test_alternatives_default_and_when(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields]
email = { xpath = ["a:customer/a:email", "a:customer/a:name"] }
channel = { xpath = "a:channel", default = "post" }
express = { xpath = "a:express", default = false, type = "boolean" }
shipping = { const = "free", when = "a:paid = 1" }
refund = { xpath = "a:refund", required = true, when = "a:paid = 0" }
""")
    assert render(m) == {"email": "Ada  Lovelace", "channel": "post", "express": False, "shipping": "free"}


def test_code_table_translates_defaults_passes_through_or_fails(make_mapping: MakeMapping) -> None:
    base = HEADER + """
[tables.country]
values = { DE = "276", AT = "040" }
[tables.lenient]
values = { AT = "040" }
passthrough = true
[tables.fallback]
values = { AT = "040" }
default = "999"
[tables.strict]
values = { AT = "040" }
"""
    m = make_mapping(base + """
[fields]
a = { xpath = "a:customer/a:country", table = "country" }
b = { xpath = "a:customer/a:country", table = "lenient" }
c = { xpath = "a:customer/a:country", table = "fallback" }
""")
    assert render(m) == {"a": "276", "b": "DE", "c": "999"}
    strict = make_mapping(base + """
[fields]
d = { xpath = "a:customer/a:country", table = "strict" }
""", name="strict")
    with pytest.raises(MappingFailed, match=r"d: code 'DE' is not in table 'strict' \(known: AT\)"):
        render(strict)


def test_lists_of_objects_of_values_and_split(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields]
skus = { xpath = "a:item/@sku", list = true }
tags = { xpath = "a:item/a:tags", list = true, split = "|" }
quantities = { each = "a:item", item = { xpath = "a:qty", type = "integer" } }
[fields.items]
each = "a:item"
required = true
[fields.items.fields]
sku = "@sku"
qty = { xpath = "a:qty", type = "integer" }
big = { const = true, when = "contains(a:tags, 'big')" }
position = { xpath = "count(preceding-sibling::a:item) + 1", type = "integer" }
""")
    assert render(m) == {
        "skus": ["x1", "x2"], "tags": ["red", "big"], "quantities": [2, 5],
        "items": [{"sku": "x1", "qty": 2, "big": True, "position": 1}, {"sku": "x2", "qty": 5, "position": 2}],
    }


def test_list_errors_name_the_item(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields.items]
each = "a:item"
[fields.items.fields]
tags = { xpath = "a:tags", required = true }
""")
    with pytest.raises(MappingFailed) as caught:
        render(m)
    assert caught.value.field == "items[1].tags"


def test_required_list_without_items(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields.lines]
each = "a:line"
required = true
fields = { n = "." }
""")
    with pytest.raises(MappingFailed, match="lines: required, but each 'a:line' gave no items"):
        render(m)


def test_several_values_for_one_field_is_an_error(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields]
qty = "a:item/a:qty"
""")
    with pytest.raises(MappingFailed, match=r"selected 2 values where one is expected"):
        render(m)


def test_from_moves_the_context_and_must_be_unique(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields.customer]
from = "a:customer"
required = true
fields = { name = "a:name", country = "a:country" }
[fields.first]
from = "a:item[1]"
fields = { sku = "@sku" }
[fields.absent]
from = "a:supplier"
fields = { name = "a:name" }
""")
    assert render(m) == {"customer": {"name": "Ada  Lovelace", "country": "DE"}, "first": {"sku": "x1"}}
    many = make_mapping(HEADER + """
[fields.item]
from = "a:item"
fields = { sku = "@sku" }
""", name="many")
    with pytest.raises(MappingFailed, match="selected 2 elements where one is expected"):
        render(many)


def test_conversion_failures_say_why(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields]
date = { xpath = "a:date", type = "date" }
""")
    with pytest.raises(MappingFailed, match=r"date: '24.12.2024' is not an ISO date"):
        render(m)


def test_context_in_templates_and_xpath_variables(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields]
reference = { template = "{tenant}/{message_id}" }
key = { template = "{idempotency_key}", required = true }
tenant_is_known = { xpath = "$tenant != ''", type = "boolean" }
echo = "concat($message_id, ':', @id)"
absent = { template = "{route}" }
""")
    data = render(m, message_id="m-1", tenant="mm", idempotency_key="k-1", route=None)
    assert data == {"reference": "mm/m-1", "key": "k-1", "tenant_is_known": True, "echo": "m-1:o-7"}
    with pytest.raises(MappingFailed, match=r"key: required, but template '\{idempotency_key\}'"):
        render(m, message_id="m-1", tenant="mm")


def test_root_selects_exactly_one_element(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER.replace('output = "json"', 'output = "json"\nroot = "/a:order/a:item"') + """
[fields]
sku = "@sku"
""")
    with pytest.raises(MappingFailed, match=r"root '/a:order/a:item' must select one element, found 2 elements"):
        render(m)


def test_unreadable_payload(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + '[fields]\nid = "@id"\n')
    with pytest.raises(MappingFailed, match="the xml payload cannot be read"):
        render(m, b"<a:order")
    with pytest.raises(MappingFailed, match="Document type declaration not allowed"):
        render(m, b'<!DOCTYPE x [<!ENTITY e "x">]><x/>')


def test_json_source_uses_the_same_language(make_mapping: MakeMapping) -> None:
    m = make_mapping("""
[mapping]
source = "json"
output = "json"
[fields]
schema = "_[@key = '$schema']"
name = "owner/name"
second_child = "owner/children[2]/name"
child_count = { xpath = "count(owner/children)", type = "integer" }
ages = { xpath = "owner/children/age", list = true, type = "integer" }
active = { xpath = "owner/active", type = "boolean" }
score = { xpath = "owner/score", type = "decimal" }
nothing = "owner/nothing"
matrix = { xpath = "matrix[2]/item", list = true, type = "integer" }
""")
    payload = json.dumps({
        "$schema": "urn:x", "owner": {"name": "Ada", "active": True, "score": 1.50, "nothing": None,
                                      "children": [{"name": "A", "age": 3}, {"name": "B", "age": 5}]},
        "matrix": [[1, 2], [3, 4]],
    }).encode()
    assert render(m, payload) == {
        "schema": "urn:x", "name": "Ada", "second_child": "B", "child_count": 2, "ages": [3, 5], "active": True,
        "score": Decimal("1.5"), "matrix": [3, 4],
    }
    with pytest.raises(MappingFailed, match="the json payload cannot be read: not JSON"):
        render(m, b"{nope")


def test_escape_hatch_for_target_fields_named_like_options(make_mapping: MakeMapping) -> None:
    m = make_mapping(HEADER + """
[fields.vehicle]
fields = { type = "a:customer/a:country", when = { const = "literal" } }
""")
    assert render(m) == {"vehicle": {"type": "DE", "when": "literal"}}
