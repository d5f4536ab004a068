"""Doors: installed Schematron (``xhub schemas add``, then every validated message) and XSLT mappings
(``mappings/<name>/*.xsl``, loaded with the rules and run per message).

Attack classes, Schematron: reading local files (``doc``, ``document``, ``unparsed-text*``,
``collection``, ``uri-collection``, ``json-doc``, ``transform``, ``doc-available``), calling out over HTTP
with the same functions, reading the environment, dynamic calls (``function-lookup``, ``doc#1``,
``fn:``/``Q{…}`` forms, ``xsl:evaluate``), writing files (``xsl:result-document``), printing message data
to the log (``xsl:message``), extension namespaces (Saxon, EXSLT, Java), ``sch:include``/``xsl:include``
pointing outside the bundle (relative, absolute, ``file:``, ``http:``, through a symlink). Each is refused
when the bundle is installed (static screen) AND cannot work when the screen is bypassed (the sandboxed
Saxon processor), which the second group proves with the screen switched off. A local secret is never
read, a loopback listener never sees a connection, includes inside the bundle still work.

Honest outcomes: Schematron present but Saxon missing or failing to start gives ``not_checked`` with the
reason, never ``valid`` (engine unit tests, a subprocess without saxonche, and the worker pipeline where
the route's ``not_checked`` policy decides).

Attack classes, XSLT mappings: ``xsl:include``/``xsl:import`` outside the mapping folder (absolute,
``..``, ``file:``, ``http:``, nested, through a symlink), ``document()`` of files outside, of a symlink out,
over HTTP, and writing files (``exsl:document``); ``document('')`` and includes inside keep working.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Engine

from hub import store
from hub.mapping import MappingError, MappingFailed
from hub.mapping.mapping import load_mapping
from hub.validation import ValidationEngine, saxon, schematron_xslt
from hub.validation.bundles import Bundle
from hub.validation.install import install_bundle
from hub.validation.manifest import BundleError, read_manifest
from tests.hostile.validation_kit import (
    SECRET,
    Listener,
    Site,
    document,
    listening,
    make_site,
    release_folder,
    snapshot,
)
from tests.hostile.validation_kit import schematron as rules_text
from tests.support import ROOT, hub_config
from xhub.runtime import make_worker

NS = "urn:xhub-test:xsch:1.0"
XSL = "http://www.w3.org/1999/XSL/Transform"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("stylesheets"))


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    with listening(tmp_path_factory.mktemp("listener") / "connections.log") as server:
        yield server


@pytest.fixture(autouse=True)
def no_connection_ever(listener: Listener) -> Iterator[None]:
    yield
    assert listener.connections == 0


def _secret_uri(site: Site) -> str:
    return site.secret.as_uri()


# Each attack: (rules for the rule body/extra, expected refusal). {secret} and {url} are filled in.
SCREENED: dict[str, tuple[str, str, str]] = {
    # name: (where: test|body|extra, text, message)
    "doc": ("test", "doc('{secret}')", r"doc\(\) reads files"),
    "document": ("test", "exists(document('{secret}'))", r"document\(\) reads files"),
    "unparsed-text": ("test", "unparsed-text('{secret}') != ''", r"unparsed-text\(\)"),
    "unparsed-text-lines": ("test", "count(unparsed-text-lines('{secret}')) > 0", r"unparsed-text-lines\(\)"),
    "unparsed-text-available": ("test", "unparsed-text-available('{secret}')", r"unparsed-text-available\(\)"),
    "doc-available": ("test", "doc-available('{secret}')", r"doc-available\(\)"),
    "collection": ("test", "count(collection('{folder}')) > 0", r"collection\(\)"),
    "uri-collection": ("test", "count(uri-collection('{folder}')) > 0", r"uri-collection\(\)"),
    "json-doc": ("test", "exists(json-doc('{secret}'))", r"json-doc\(\)"),
    "transform": ("test", "exists(transform(map{{'stylesheet-location': '{url}'}}))", r"transform\(\)"),
    "environment": ("test", "environment-variable('HOME') != ''", r"environment-variable\(\)"),
    "function-lookup": ("test", "exists(function-lookup(xs:QName('fn:doc'), 1))", r"function-lookup\(\)"),
    "fn-prefix": ("test", "exists(fn:doc('{secret}'))", r"doc\(\)"),
    "eqname": ("test", "exists(Q{{http://www.w3.org/2005/xpath-functions}}doc('{secret}'))", r"doc\(\)"),
    "function-reference": ("test", "exists(doc#1('{secret}'))", r"doc\(\)"),
    "http-doc": ("test", "exists(doc('{url}'))", r"doc\(\)"),
    "http-text": ("test", "unparsed-text('{url}') = ''", r"unparsed-text\(\)"),
    "let": ("body", "<sch:let name='s' value=\"unparsed-text('{secret}')\"/>", r"unparsed-text\(\)"),
    "value-of": ("body", "<sch:report test='true()'><sch:value-of select=\"unparsed-text('{secret}')\"/>"
                 "</sch:report>", r"unparsed-text\(\)"),
    "let-avt": ("body", "<sch:let name='s'><x a=\"{{unparsed-text('{secret}')}}\"/></sch:let>",
                r"unparsed-text\(\)"),
    "function-body": ("extra", "<xsl:function name='f:s'><xsl:sequence select=\"doc('{secret}')\"/>"
                      "</xsl:function>", r"doc\(\)"),
    "result-document": ("extra", "<xsl:function name='f:w'><xsl:result-document href='{written}'><x/>"
                        "</xsl:result-document></xsl:function>", "xsl:result-document is not allowed"),
    "message": ("extra", "<xsl:function name='f:m'><xsl:message select='.'/></xsl:function>",
                "xsl:message is not allowed"),
    "evaluate": ("extra", "<xsl:function name='f:e'><xsl:evaluate xpath=\"'1'\"/></xsl:function>",
                 "xsl:evaluate is not allowed"),
    "source-document": ("extra", "<xsl:function name='f:d'><xsl:source-document href='{secret}'/>"
                        "</xsl:function>", "xsl:source-document is not allowed"),
    "saxon-namespace": ("extra", "<sch:ns prefix='saxon' uri='http://saxon.sf.net/'/>",
                        "namespace 'http://saxon.sf.net/' is for extension functions"),
    "exslt-namespace": ("extra", "<sch:ns prefix='str' uri='http://exslt.org/strings'/>",
                        "is for extension functions"),
    "java-namespace": ("extra", "<sch:ns prefix='j' uri='java:java.lang.Runtime'/>", "is for extension functions"),
    "include-relative": ("extra", "<sch:include href='../../../secret.sch'/>", "points outside the bundle"),
    "include-absolute": ("extra", "<sch:include href='{secret}'/>", "points outside the bundle"),
    "include-file-uri": ("extra", "<sch:include href='file://{secret_path}'/>", "points outside the bundle"),
    "include-http": ("extra", "<sch:include href='{url}'/>", "points outside the bundle"),
    "xsl-include-out": ("extra", "<xsl:include href='../../../secret.xsl'/>", "xsl:include .* points outside"),
    "xsl-import-http": ("extra", "<xsl:import href='{url}'/>", "xsl:import .* points outside"),
}


def _rules(site: Site, listener: Listener, where: str, text: str) -> str:
    text = text.format(secret=_secret_uri(site), secret_path=site.secret, url=listener.url,
                       folder=site.root.as_uri(), written=(site.root / "written.xml").as_uri())
    namespaces = f' xmlns:xsl="{XSL}" xmlns:f="urn:f" xmlns:xs="http://www.w3.org/2001/XMLSchema"'
    built = rules_text(NS, test=text) if where == "test" else rules_text(NS, **{where: text})
    return built.replace("<sch:schema ", f"<sch:schema{namespaces} ", 1)


@pytest.mark.parametrize("name", sorted(SCREENED))
def test_schematron_escape_is_refused_at_install(site: Site, listener: Listener, tmp_path: Path, name: str) -> None:
    where, text, message = SCREENED[name]
    folder = release_folder(tmp_path / "r", "XSch", "1.0", rules=_rules(site, listener, where, text))
    before = snapshot(site.root)
    with pytest.raises(BundleError, match=f"XSch 1.0: rules.sch.*{message}") as caught:
        install_bundle(folder, site.schema_dir)
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)
    assert snapshot(site.root) == before
    site.assert_still_works()


RUNTIME = {
    # Each test needs the content: Saxon folds exists() of a one-item expression without evaluating it.
    "doc": "string(doc('{secret}')) = ''",
    "unparsed-text": "unparsed-text('{secret}') = ''",
    "json-doc": "string(json-doc('{secret}')) = ''",
    "collection": "count(collection('{folder}')) = 0",
    "http-doc": "string(doc('{url}')) = ''",
    "http-text": "unparsed-text('{url}') = ''",
    "dtd-in-parse-xml": "string(parse-xml('&lt;!DOCTYPE x SYSTEM &quot;{url}&quot;&gt;&lt;x/&gt;')) = ''",
    "entity-in-parse-xml": "contains(string(parse-xml('&lt;!DOCTYPE x [&lt;!ENTITY e SYSTEM &quot;{secret}&quot;&gt;]"
                           "&gt;&lt;x&gt;&amp;e;&lt;/x&gt;')), 'SECRET')",
}


@pytest.fixture
def screen_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bypass the static screen: what remains is the sandboxed Saxon processor."""
    monkeypatch.setattr(schematron_xslt, "screen", lambda schema, name: None)


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_sandboxed_saxon_refuses_what_the_screen_would_miss(site: Site, listener: Listener, tmp_path: Path,
                                                            screen_off: None, name: str) -> None:
    folder = release_folder(tmp_path / "r", "XSch", "1.0", rules=_rules(site, listener, "test", RUNTIME[name]))
    before = snapshot(site.root)
    report = ValidationEngine([Bundle(folder, read_manifest(folder), "operator")]).validate(document(NS))
    assert report.verdict == "not_checked", report
    assert re.search("has been (prohibited|disallowed)", report.reason or ""), report.reason
    assert SECRET not in str(report.to_dict())
    assert snapshot(site.root) == before
    site.assert_still_works()


def test_sandboxed_saxon_hides_the_environment(site: Site, listener: Listener, tmp_path: Path,
                                               screen_off: None) -> None:
    body = ("<sch:report id='env' test='true()'>[<sch:value-of select=\"environment-variable('PATH')\"/>]"
            "[<sch:value-of select=\"system-property('user.home')\"/>]</sch:report>")
    folder = release_folder(tmp_path / "r", "XSch", "1.0", rules=_rules(site, listener, "body", body))
    report = ValidationEngine([Bundle(folder, read_manifest(folder), "operator")]).validate(document(NS))
    assert [(f.rule, f.message) for f in report.errors] == [("env", "[][]")]


def test_sandboxed_saxon_refuses_result_document(site: Site, listener: Listener, tmp_path: Path,
                                                 screen_off: None) -> None:
    where, text, _ = SCREENED["result-document"]
    folder = release_folder(tmp_path / "r", "XSch", "1.0", rules=_rules(site, listener, where, text))
    report = ValidationEngine([Bundle(folder, read_manifest(folder), "operator")]).validate(document(NS))
    assert report.verdict == "not_checked"
    assert "xsl:result-document is disabled" in (report.reason or "")
    assert not (site.root / "written.xml").exists()


def test_include_through_a_symlink_out_is_refused_when_loaded(site: Site, listener: Listener,
                                                              tmp_path: Path) -> None:
    """A bundle placed by hand (not by ``schemas add``, which refuses links out) is still confined."""
    outside = tmp_path / "outside.sch"
    outside.write_text(f"<sch:pattern xmlns:sch='http://purl.oclc.org/dsdl/schematron'><sch:rule context='*'>"
                       f"<sch:assert test=\"unparsed-text('{_secret_uri(site)}') = ''\">x</sch:assert>"
                       "</sch:rule></sch:pattern>")
    folder = release_folder(tmp_path / "r", "XSch", "1.0", rules=_rules(site, listener, "extra",
                                                                      "<sch:include href='inner.sch'/>"))
    (folder / "inner.sch").symlink_to(outside)
    report = ValidationEngine([Bundle(folder, read_manifest(folder), "operator")]).validate(document(NS))
    assert report.verdict == "not_checked"
    assert "sch:include 'inner.sch' points outside the bundle" in (report.reason or "")
    site.assert_still_works()


def test_includes_inside_the_bundle_still_work(site: Site, tmp_path: Path) -> None:
    pattern = (f"<sch:pattern xmlns:sch='http://purl.oclc.org/dsdl/schematron' xmlns:t='{NS}' xmlns:f='urn:f'>"
               "<sch:rule context='t:wert'><sch:assert id='t-002' test='f:short(.)'>zu lang</sch:assert>"
               "</sch:rule></sch:pattern>")
    functions = (f"<xsl:stylesheet version='2.0' xmlns:xsl='{XSL}' xmlns:f='urn:f' "
                 "xmlns:xs='http://www.w3.org/2001/XMLSchema'><xsl:function name='f:short' as='xs:boolean'>"
                 "<xsl:param name='v'/><xsl:sequence select='string-length($v) lt 10'/></xsl:function>"
                 "</xsl:stylesheet>")
    extra = ("<sch:ns prefix='f' uri='urn:f'/><xsl:include href='lib/functions.xsl'/>"
             "<sch:include href='patterns/short.sch'/>")
    rules = rules_text(NS, extra=extra).replace("<sch:schema ", f"<sch:schema xmlns:xsl='{XSL}' ", 1)
    folder = release_folder(tmp_path / "r", "XSch", "1.0", rules=rules,
                            files={"patterns/short.sch": pattern, "lib/functions.xsl": functions})
    bundle = install_bundle(folder, site.schema_dir, replace=True)
    engine = ValidationEngine([bundle])
    assert engine.validate(document(NS)).verdict == "valid"
    too_long = engine.validate(document(NS, "viel-zu-langer-wert"))
    assert [(f.rule, f.message) for f in too_long.errors] == [("t-002", "zu lang")]
    site.assert_still_works()


# --- honest outcomes: rules that did not run never make a document valid ---------------------------

def _fresh_base(site: Site) -> ValidationEngine:
    folder = site.schema_dir / "xbase-1.0"
    return ValidationEngine([Bundle(folder, read_manifest(folder), "operator")])


def test_saxon_missing_gives_not_checked(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hub.validation.bundles.saxon_available", lambda: False)
    engine = _fresh_base(site)
    for value in ("ok", "verboten"):
        report = engine.validate(document(site.base_namespace, value))
        assert report.verdict == "not_checked"
        assert report.reason == "Schematron rules of XBase 1.0 not checked: saxonche is not installed"
    broken = engine.validate(b"<t:test.nachricht.0001 xmlns:t='urn:xhub-test:xbase:1.0'/>")
    assert broken.verdict == "invalid"  # what did run still counts


def test_saxon_failing_to_start_gives_not_checked(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    import saxonche

    def fail(*args: object, **kwargs: object) -> object:
        raise RuntimeError("GraalVM isolate could not be created")

    monkeypatch.setattr(saxonche, "PySaxonProcessor", fail)
    monkeypatch.setattr(saxon, "_saxon_state", {})
    report = _fresh_base(site).validate(document(site.base_namespace, "verboten"))
    assert report.verdict == "not_checked"
    assert report.reason == ("Schematron rules of XBase 1.0 not checked: Saxon failed to start "
                             "(RuntimeError: GraalVM isolate could not be created)")


def test_without_saxonche_the_cli_reports_not_checked(site: Site, tmp_path: Path) -> None:
    (tmp_path / "m.xml").write_bytes(document(site.base_namespace, "verboten"))
    code = ("import sys; sys.modules['saxonche'] = None\n"
            "from hub.validation.cli import main_app\nmain_app()")
    result = subprocess.run([sys.executable, "-c", code, "validate", "--schema-dir", str(site.schema_dir),
                             str(tmp_path / "m.xml")], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            check=False)
    assert result.returncode == 1, result.stderr
    assert "not_checked | XBase 1.0 test.nachricht.0001 | Schematron rules of XBase 1.0 not checked: " \
           "saxonche is not installed" in result.stdout


@pytest.fixture
def saxon_missing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("hub.validation.bundles.saxon_available", lambda: False)
    ValidationEngine.reset_shared()
    yield
    ValidationEngine.reset_shared()


@pytest.mark.parametrize(("policy", "final"), [("pass", "acknowledged"), ("reject", "rejected")])
def test_pipeline_lets_the_route_decide_when_rules_could_not_run(
    site: Site, engine: Engine, db_url: str, tmp_path: Path, saxon_missing: None, policy: str, final: str
) -> None:
    config = hub_config(db_url, tmp_path, schema_dir=str(site.schema_dir),
                        routes=[{"name": "all", "targets": ["outbox"], "not_checked": policy}])
    message, _ = store.accept(engine, store.NewMessage("memmingen", "rest", "portal", [
        store.Part("payload", "application/xml", document(site.base_namespace, "verboten"))]), actor="sender:portal")
    make_worker(config, engine).run(exit_when_idle=True)
    done = store.get(engine, message.id)
    assert done is not None and (done.status, done.verdict) == (final, "not_checked")
    validated = next(e for e in store.events(engine, message.id) if e.to_status == "validated")
    assert "Schematron rules of XBase 1.0 not checked: saxonche is not installed" in validated.reason


# --- XSLT mappings ----------------------------------------------------------------------------------

MAPPING_TOML = '[mapping]\nsource = "xml"\noutput = "xml"\nxslt = "s.xsl"\n'


def _stylesheet(body: str, top: str = "") -> str:
    return (f'<xsl:stylesheet version="1.0" xmlns:xsl="{XSL}" xmlns:exsl="http://exslt.org/common" '
            f'extension-element-prefixes="exsl">{top}<xsl:template match="/"><r>{body}</r></xsl:template>'
            "</xsl:stylesheet>")


@pytest.fixture
def mapping_folder(site: Site, tmp_path: Path) -> Path:
    folder = tmp_path / "mappings" / "m"
    folder.mkdir(parents=True)
    (folder / "mapping.toml").write_text(MAPPING_TOML)
    (folder / "inc.xsl").write_text(f'<xsl:stylesheet version="1.0" xmlns:xsl="{XSL}">'
                                    '<xsl:template name="i"><inc/></xsl:template></xsl:stylesheet>')
    (folder / "table.xml").write_text("<t><e k='a'>A</e></t>")
    (folder / "link.xml").symlink_to(site.secret)
    (site.root / "outside.xsl").write_text(_stylesheet(""))
    return folder


def _mapping_still_works(folder: Path) -> None:
    (folder / "s.xsl").write_text(_stylesheet("<xsl:call-template name='i'/><xsl:value-of select="
                                              "\"document('table.xml')//e\"/><xsl:value-of select="
                                              "\"count(document('')/*)\"/>", "<xsl:include href='inc.xsl'/>"))
    assert load_mapping(folder).render(b"<a/>", context={}).body.endswith(b"<r><inc/>A1</r>\n")


INCLUDES = {
    "absolute": ("<xsl:include href='{outside}'/>", "xsl:include '.*outside.xsl' is not a file inside"),
    "relative": ("<xsl:include href='../../../outside.xsl'/>", r"xsl:include '\.\./\.\./\.\./outside.xsl'"),
    "file-uri": ("<xsl:include href='file://{outside}'/>", "is not a file inside the mapping folder"),
    "http": ("<xsl:import href='{url}'/>", "xsl:import 'http://127.0.0.1:.*' is not a file inside"),
    "nested": ("<xsl:include href='nest.xsl'/>", "nest.xsl:1: xslt: xsl:include '.*outside.xsl' is not a file"),
    "symlink": ("<xsl:include href='link.xml'/>", "xsl:include 'link.xml' is not a file inside"),
}


@pytest.mark.parametrize("name", sorted(INCLUDES))
def test_mapping_includes_outside_the_folder_are_refused(site: Site, listener: Listener, mapping_folder: Path,
                                                        name: str) -> None:
    top, message = INCLUDES[name]
    outside = site.root / "outside.xsl"
    (mapping_folder / "nest.xsl").write_text(f'<xsl:stylesheet version="1.0" xmlns:xsl="{XSL}">'
                                             f"<xsl:include href='{outside}'/></xsl:stylesheet>")
    (mapping_folder / "s.xsl").write_text(_stylesheet("", top.format(outside=outside, url=listener.url)))
    before = snapshot(site.root)
    with pytest.raises(MappingError, match=message):
        load_mapping(mapping_folder)
    assert snapshot(site.root) == before
    _mapping_still_works(mapping_folder)


DOCUMENTS = {
    "absolute": ("<xsl:value-of select=\"document('{secret}')\"/>", "tried to read '.*secret.txt', outside"),
    "relative": ("<xsl:value-of select=\"document('../../../secret.txt')\"/>", "tried to read '.*secret.txt'"),
    "symlink": ("<xsl:value-of select=\"document('link.xml')\"/>", "tried to read '.*link.xml', outside"),
    "http": ("<xsl:value-of select=\"document('{url}')\"/>", "read rights for http://127.0.0.1:.* denied"),
    "write": ("<exsl:document href='{written}'><x/></exsl:document>", "write rights for .*written.xml denied"),
}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_mapping_documents_outside_the_folder_are_refused(site: Site, listener: Listener, mapping_folder: Path,
                                                         name: str) -> None:
    body, message = DOCUMENTS[name]
    (mapping_folder / "s.xsl").write_text(_stylesheet(body.format(
        secret=site.secret, url=listener.url, written=site.root / "written.xml")))
    before = snapshot(site.root)
    mapping = load_mapping(mapping_folder)
    with pytest.raises(MappingFailed, match=message) as caught:
        mapping.render(b"<a/>", context={})
    assert SECRET not in str(caught.value)
    assert snapshot(site.root) == before
    _mapping_still_works(mapping_folder)


def test_shipped_xslt_mapping_still_works() -> None:
    folder = ROOT / "mappings" / "xbau-to-xdomea-abgabe"
    golden = folder / "golden" / "eingangsbestaetigung"
    rendered = load_mapping(folder).render(golden.with_suffix(".input.xml").read_bytes(), context={
        "message_id": "m-1"})
    assert etree.fromstring(rendered.body).tag.endswith("Abgabe.Abgabe.0401")
