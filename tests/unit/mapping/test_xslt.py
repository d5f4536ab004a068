"""XML output through XSLT: context and [params] as parameters, terminate, compile errors with line."""

from __future__ import annotations

import pytest

from hub.mapping import MappingError, MappingFailed
from tests.unit.mapping.conftest import MakeMapping

TOML = """
[mapping]
source = "xml"
output = "xml"
xslt = "t.xsl"
[params]
label = "{tenant}-copy"
"""

XSL = """\
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:param name="message_id"/>
  <xsl:param name="label"/>
  <xsl:template match="/">
    <xsl:if test="not(/order)"><xsl:message terminate="yes">no order here</xsl:message></xsl:if>
    <copy id="{$message_id}" label="{$label}"><xsl:copy-of select="/order/*"/></copy>
  </xsl:template>
</xsl:stylesheet>
"""


def test_xslt_gets_context_and_params(make_mapping: MakeMapping) -> None:
    m = make_mapping(TOML, files={"t.xsl": XSL})
    assert (m.source, m.output) == ("xml", "xml")
    rendered = m.render(b"<order><n>1</n></order>", context={"message_id": "m'1\"", "tenant": "mm", "x y": "z"})
    assert rendered.content_type == "application/xml"
    assert rendered.data is None
    assert b'<copy id="m\'1&quot;" label="mm-copy"><n>1</n></copy>' in rendered.body


def test_terminate_is_mapping_failed(make_mapping: MakeMapping) -> None:
    m = make_mapping(TOML, files={"t.xsl": XSL})
    with pytest.raises(MappingFailed, match="the stylesheet stopped: no order here"):
        m.render(b"<invoice/>", context={})


def test_json_source_through_xslt(make_mapping: MakeMapping) -> None:
    m = make_mapping(TOML.replace('source = "xml"', 'source = "json"'), files={"t.xsl": XSL.replace("/order", "/json")})
    assert b"<n>1</n>" in m.render(b'{"n": 1}', context={}).body


def test_stylesheet_errors_point_into_the_stylesheet(make_mapping: MakeMapping) -> None:
    broken = XSL.replace('<xsl:copy-of select="/order/*"/>', '<xsl:copy-of select="/order/*["/>')
    with pytest.raises(MappingError) as caught:
        make_mapping(TOML, files={"t.xsl": broken})
    assert caught.value.file.endswith("t.xsl")
    assert caught.value.line == 6
    assert "does not compile" in str(caught.value)
    with pytest.raises(MappingError, match=r"t.xsl:2: xslt: not well-formed"):
        make_mapping(TOML, files={"t.xsl": "<xsl:stylesheet\n<"})


def test_missing_stylesheet_and_bad_params(make_mapping: MakeMapping) -> None:
    with pytest.raises(MappingError, match=r"mapping.toml:5: mapping.xslt: no stylesheet 't.xsl'"):
        make_mapping(TOML)
    with pytest.raises(MappingError, match=r"params.n: a parameter is a string"):
        make_mapping(TOML + "n = 1\n", files={"t.xsl": XSL})
    with pytest.raises(MappingError, match=r"fields: output = \"xml\" is produced by the stylesheet"):
        make_mapping(TOML + '[fields]\nx = "a"\n', files={"t.xsl": XSL})
