"""A local-only resolver for ``xs:include`` / ``xs:import`` while compiling a bundle's XSDs.

libxml2 would fetch ``schemaLocation="http://…"`` from the network. This resolver maps such URLs to
files inside the bundle instead: first through the manifest's ``schema_locations``, then by a unique
file name match inside the bundle (XRepository bundles ship the imported files beside the importers).
Anything else, and any local path outside the bundle folder, is refused: it resolves to an empty
document and is recorded in :attr:`BundleResolver.refused`, so the compile error can name it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from lxml import etree

__all__ = ["BundleResolver", "schema_parser"]

_REMOTE = ("http", "https", "ftp")
_REFUSED = "<refused-by-xoev-hub/>"


class BundleResolver(etree.Resolver):  # type: ignore[misc]  # lxml's stubs are not installed
    """Resolve schema locations of one bundle folder without network or escapes from the folder."""

    def __init__(self, folder: Path, locations: dict[str, str]) -> None:
        super().__init__()
        self.folder = folder.resolve()
        self.locations = {url: (self.folder / rel).resolve() for url, rel in locations.items()}
        self.by_name: dict[str, list[Path]] = {}
        for path in self.folder.rglob("*.xsd"):
            self.by_name.setdefault(path.name, []).append(path)
        self.refused: list[str] = []

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.folder)

    def local_path(self, url: str) -> Path | None:
        """The local file for ``url``, or None when it must be refused."""
        if url in self.locations:
            return self.locations[url]
        parsed = urlparse(url)
        if parsed.scheme in _REMOTE:
            candidates = self.by_name.get(Path(unquote(parsed.path)).name, [])
            return candidates[0] if len(candidates) == 1 else None
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
        elif parsed.scheme and len(parsed.scheme) > 1:
            return None  # any other scheme (data:, jar:, …)
        else:
            path = Path(url)
        return path if self._inside(path) else None

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        path = self.local_path(system_url)
        if path is None or not path.is_file():
            self.refused.append(system_url)
            return self.resolve_string(_REFUSED, context)
        return self.resolve_filename(str(path), context)


def schema_parser(resolver: BundleResolver) -> etree.XMLParser:
    """A parser for schema documents: no network, no DTDs, no entities, the bundle's resolver."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    parser.resolvers.add(resolver)
    return parser
