"""XÖV validation: schema bundles, detection and header extraction, XSD, code lists, Schematron.

Public interface::

    engine = ValidationEngine.shared([Path("xsd"), Path("var/schemas")])
    report = engine.validate(data)        # never raises; report.verdict in valid|invalid|not_checked

Module map: ``manifest`` (bundle.json), ``bundles`` (discovery, lazy compile), ``resolver`` (local-only
schema imports), ``detection`` (standard/version/type, header), ``codelists`` (genericode),
``schematron`` (the one Schematron engine: rules compiled once per bundle, run on Saxon-HE),
``schematron_xslt`` (a Schematron file → an XSLT stylesheet), ``schematron_source`` (reading .sch
files), ``saxon`` (the sandboxed Saxon processor), ``confinement`` (what installed rules may not do; the
sandboxed Saxon settings), ``engine``, ``report``, ``install`` (``xhub schemas add``), ``unpack`` (a release into a
staging folder, checked), ``paths`` (paths from outside: kinds, safe reading, relative names), ``cli``
(typer commands).
"""

from __future__ import annotations

from hub.validation.engine import ValidationEngine
from hub.validation.report import Finding, Report

__all__ = ["Finding", "Report", "ValidationEngine"]
