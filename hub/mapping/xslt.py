"""XSLT 1.0 stylesheets (lxml/libxslt) for XML-output mappings: compiled once, applied per message.

Parameters: every context value (``message_id``, ``tenant``, …) is passed as a string parameter of the
same name, then the mapping's ``[params]`` (templates over the context); a stylesheet declares the ones
it uses with ``<xsl:param name="message_id"/>``, undeclared ones are ignored. ``<xsl:message
terminate="yes">`` makes the message unmappable with the stylesheet's text as the reason.

The stylesheet may read files next to it (``xsl:include``/``xsl:import``) but nothing from the network,
and may not write files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from lxml import etree

from hub.mapping.errors import MappingError, MappingFailed
from hub.mapping.rules import Template

__all__ = ["Stylesheet"]

_ACCESS = etree.XSLTAccessControl(read_network=False, write_file=False, create_dir=False, write_network=False)


def _xml_name(name: str) -> bool:
    try:
        etree.QName(name)
    except ValueError:
        return False
    return ":" not in name


class Stylesheet:
    """One compiled stylesheet and the parameters the mapping adds."""

    def __init__(
        self, path: Path, params: Mapping[str, Template], *, mapping_file: Path, param_lines: Mapping[str, int | None]
    ) -> None:
        self.path = path
        self.params = dict(params)
        for name in self.params:
            if not _xml_name(name):
                raise MappingError(mapping_file, param_lines.get(name), f"params.{name}", "not an XSLT parameter name")
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            document = etree.parse(str(path), parser)
        except OSError as exc:
            line = param_lines.get("")
            raise MappingError(mapping_file, line, "mapping.xslt", f"cannot read {path}: {exc}") from None
        except etree.XMLSyntaxError as exc:
            raise MappingError(path, exc.lineno, "xslt", f"not well-formed: {exc.msg}") from None
        try:
            self.transform = etree.XSLT(document, access_control=_ACCESS)
        except etree.XSLTParseError as exc:
            line = next((e.line for e in exc.error_log if e.line), None)
            detail = "; ".join(e.message for e in exc.error_log) if exc.error_log else str(exc)
            raise MappingError(path, line, "xslt", f"does not compile: {detail}") from None

    def apply(self, tree: etree._Element, context: Mapping[str, str | None], *, mapping: str) -> bytes:
        """Transform ``tree``; raises MappingFailed on ``xsl:message terminate`` or a runtime error."""
        params: dict[str, str] = {}
        for name, value in context.items():
            if _xml_name(name):
                params[name] = etree.XSLT.strparam(value or "")
        for name, template in self.params.items():
            params[name] = etree.XSLT.strparam(template.render(context) or "")
        try:
            result = self.transform(tree, **params)
        except etree.XSLTApplyError as exc:
            messages = [e.message for e in self.transform.error_log] or [str(exc)]
            raise MappingFailed(mapping, None, f"the stylesheet stopped: {'; '.join(messages)}") from None
        if result.getroot() is None:
            raise MappingFailed(mapping, None, "the stylesheet produced no XML element")
        return bytes(result)
