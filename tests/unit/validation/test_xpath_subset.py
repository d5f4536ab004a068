"""The portable XPath subset: accepted expressions and patterns, and what stays with Saxon."""

from __future__ import annotations

import pytest

from hub.validation.xpath_subset import PatternBranch, classify, classify_pattern


@pytest.mark.parametrize(
    ("expression", "kind"),
    [
        ("not(not(*) and normalize-space(.) = '')", "boolean"),
        ("a/b[@c = 'x'] | d", "nodes"),
        ("count(a) = 2", "boolean"),
        ("concat(., name())", "string"),
        ("$v = 'x'", "boolean"),
        ("exists(a)", "boolean"),  # translated: boolean(a)
        ("a = 1", "boolean"),  # with run-time guards: one node, a decimal numeral
        ("string(a)", "string"),  # with a run-time guard: at most one node
    ],
)
def test_portable(expression: str, kind: str) -> None:
    typed = classify(expression, {"v": "string"})
    assert typed is not None and typed.kind == kind


@pytest.mark.parametrize(
    "expression",
    [
        "if (a) then b else true()",  # a non-boolean branch
        "exists('a')",  # exists() of a string
        "a = true()",  # 2.0 casts the node to a boolean
        "a < b",  # 1.0 numbers, 2.0 strings
        "a = b = c",  # a syntax error in 2.0
        "a[string(b) = 'x']",  # a guard (several b) inside a predicate
        "count(a) + 1",  # integer arithmetic
        "position() = 1",  # the XSLT focus differs
        "text() = 'x'",  # text node merging may differ
        "$unknown",  # not a portable variable
        "1e3",  # 2.0 literal
    ],
)
def test_not_portable(expression: str) -> None:
    assert classify(expression) is None


def test_patterns() -> None:
    assert classify_pattern("x:a//b[@n = '1'] | /x:r/*") == [
        PatternBranch("//x:a//b[@n = '1']", ("x:a", "b")),
        PatternBranch("/x:r/*", ("x:r",)),
    ]
    for pattern in ("@n", "/", "text()", "a/@n", "key('k', 'v')", "a[position() + 1]"):
        assert classify_pattern(pattern) is None
