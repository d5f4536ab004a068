"""XSLT 1.0 stylesheets (lxml/libxslt) for XML-output mappings: compiled once, applied per message.

Parameters: every context value (``message_id``, ``tenant``, …) is passed as a string parameter of the
same name, then the mapping's ``[params]`` (templates over the context); a stylesheet declares the ones
it uses with ``<xsl:param name="message_id"/>``, undeclared ones are ignored. ``<xsl:message
terminate="yes">`` makes the message unmappable with the stylesheet's text as the reason.

Confinement: a stylesheet may read files inside its mapping folder (``xsl:include``/``xsl:import``,
``document()``, including ``document('')`` for lookup tables in the stylesheet itself) and nothing else:

* every URI libxslt loads (includes at compile time, ``document()`` at run time, external entities of
  loaded files) goes through :class:`_FolderResolver`, which maps it to a regular file inside the folder
  (symbolic links resolved) or refuses it; it never returns "not mine", so libxslt's own loader is
  never used;
* ``XSLTAccessControl`` denies all network access and every write (``exsl:document``,
  ``xsl:document``, creating folders), whatever the resolver says;
* includes and imports are checked before compiling, file by file, so a stylesheet that reaches out is
  a :class:`MappingError` at load time with the stylesheet's file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

from lxml import etree

from hub.mapping.errors import MappingError, MappingFailed
from hub.mapping.rules import Template

__all__ = ["Stylesheet"]

_ACCESS = etree.XSLTAccessControl(
    read_file=True, write_file=False, create_dir=False, read_network=False, write_network=False
)
_XSL = "http://www.w3.org/1999/XSL/Transform"
_INCLUDES = (f"{{{_XSL}}}include", f"{{{_XSL}}}import")
_MAX_INCLUDE_DEPTH = 20


class _Escape(Exception):
    """A URI the stylesheet asked for that is not a file inside its mapping folder."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class _FolderResolver(etree.Resolver):  # type: ignore[misc]  # lxml's stubs are not installed
    """Maps every URI to a regular file inside ``folder``, or raises :class:`_Escape`."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder.resolve()

    def local(self, url: str) -> Path | None:
        """The file inside the folder that ``url`` names, or None."""
        parsed = urlparse(url)
        if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
            path = Path(unquote(parsed.path))
        elif parsed.scheme and len(parsed.scheme) > 1:
            return None  # http:, ftp:, data:, … and file://otherhost/
        else:
            path = Path(url)
        try:
            real = (path if path.is_absolute() else self.folder / path).resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            return None
        return real if real.is_relative_to(self.folder) and real.is_file() else None

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        path = self.local(system_url)
        if path is None:
            raise _Escape(system_url)
        return self.resolve_filename(str(path), context)


def _parser(resolver: _FolderResolver) -> etree.XMLParser:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(resolver)
    return parser


def _check_includes(path: Path, document: etree._ElementTree, resolver: _FolderResolver, depth: int = 0) -> None:
    """Every ``xsl:include``/``xsl:import``, followed file by file, names a file inside the folder."""
    if depth > _MAX_INCLUDE_DEPTH:
        raise MappingError(path, None, "xslt", f"xsl:include/xsl:import nested deeper than {_MAX_INCLUDE_DEPTH}")
    for element in document.getroot().iterchildren(*_INCLUDES):
        href = element.get("href", "")
        kind = f"xsl:{etree.QName(element).localname}"
        target = resolver.local(urljoin(path.resolve().as_uri(), href))
        if target is None:
            raise MappingError(
                path, element.sourceline, "xslt",
                f"{kind} {href!r} is not a file inside the mapping folder {resolver.folder}; a stylesheet may "
                "only include files next to it",
            )
        try:
            included = etree.parse(str(target), _parser(resolver))
        except (OSError, etree.XMLSyntaxError, _Escape) as exc:
            raise MappingError(path, element.sourceline, "xslt", f"{kind} {href!r}: cannot read: {exc}") from None
        _check_includes(target, included, resolver, depth + 1)


def _xml_name(name: str) -> bool:
    try:
        etree.QName(name)
    except ValueError:
        return False
    return ":" not in name


class Stylesheet:
    """One compiled stylesheet and the parameters the mapping adds."""

    def __init__(
        self,
        path: Path,
        params: Mapping[str, Template],
        *,
        mapping_file: Path,
        param_lines: Mapping[str, int | None],
        folder: Path | None = None,
    ) -> None:
        """Compile ``path``; it may read files inside ``folder`` only (default: the stylesheet's folder)."""
        self.path = path
        self.params = dict(params)
        for name in self.params:
            if not _xml_name(name):
                raise MappingError(mapping_file, param_lines.get(name), f"params.{name}", "not an XSLT parameter name")
        resolver = _FolderResolver(folder if folder is not None else path.parent)
        try:
            document = etree.parse(str(path), _parser(resolver))
        except (OSError, _Escape) as exc:
            line = param_lines.get("")
            raise MappingError(mapping_file, line, "mapping.xslt", f"cannot read {path}: {exc}") from None
        except etree.XMLSyntaxError as exc:
            raise MappingError(path, exc.lineno, "xslt", f"not well-formed: {exc.msg}") from None
        _check_includes(path, document, resolver)
        try:
            self.transform = etree.XSLT(document, access_control=_ACCESS)
        except _Escape as exc:  # an include the static check could not see (e.g. computed by a resolver)
            raise MappingError(path, None, "xslt", f"reads {exc.url!r}, outside the mapping folder") from None
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
        except _Escape as exc:
            raise MappingFailed(
                mapping, None, f"the stylesheet tried to read {exc.url!r}, outside its mapping folder; refused"
            ) from None
        except etree.XSLTApplyError as exc:
            messages = [e.message for e in self.transform.error_log] or [str(exc)]
            raise MappingFailed(mapping, None, f"the stylesheet stopped: {'; '.join(messages)}") from None
        if result.getroot() is None:
            raise MappingFailed(mapping, None, "the stylesheet produced no XML element")
        return bytes(result)
