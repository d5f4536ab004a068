"""Outbound adapters: file, REST, SOAP.

Each adapter implements :class:`hub.ports.OutboundAdapter` and depends on the core only; adapters do not
import each other (what they share over HTTP, the one status table and the client helpers, is the core's:
:mod:`hub.http_status`, :mod:`hub.http_support`). The one registry of adapters is :mod:`xhub.registry`.
"""
