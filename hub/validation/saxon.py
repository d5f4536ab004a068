"""The one Saxon-HE processor of a process (``saxonche``), created sandboxed, and what happens without it.

Saxon is a native wheel (GraalVM). It may be missing, or fail to start in a process (a broken install, a
forked worker that cannot create its isolate). :func:`processor` then raises
:class:`SchematronUnavailable`, and the engine reports ``not_checked``: rules that did not run never make
a document valid. The processor is created with :data:`hub.validation.confinement.SAXON_FEATURES` (no
URI access, no external functions) before anything is compiled on it. ``saxon_lock`` serialises its use:
one processor is shared by the threads of a process.
"""

from __future__ import annotations

import os
import threading

from hub.validation.confinement import SAXON_FEATURES
from hub.validation.schematron_source import SchematronError

__all__ = ["SchematronUnavailable", "processor", "saxon_available", "saxon_lock"]

saxon_lock = threading.Lock()
_saxon_state: dict[str, object] = {}


class SchematronUnavailable(SchematronError):
    """Saxon cannot run in this process (saxonche not importable, or it failed to start).

    Not a fault of the rules or of the document: the rules simply did not run, so the verdict can only
    be ``not_checked``. ``str()`` is the reason, with the cause's type.
    """


def saxon_available() -> bool:
    """True when saxonche can be imported (a native wheel: a broken install must not pass as "valid")."""
    try:
        import saxonche  # noqa: F401
    except ImportError:
        return False
    return True


def processor() -> object:
    """The sandboxed Saxon processor of this process; raises :class:`SchematronUnavailable`."""
    # One Saxon processor per process; a forked worker must not reuse its parent's (GraalVM isolate).
    if _saxon_state.get("pid") != os.getpid():
        try:
            from saxonche import PySaxonApiError, PySaxonProcessor
        except ImportError as exc:
            raise SchematronUnavailable(f"saxonche cannot be imported ({type(exc).__name__}: {exc})") from None
        try:
            proc = PySaxonProcessor(license=False)
            for feature, value in SAXON_FEATURES.items():
                proc.set_configuration_property(feature, value)
        except (PySaxonApiError, RuntimeError, OSError, MemoryError, ValueError) as exc:
            raise SchematronUnavailable(f"Saxon failed to start ({type(exc).__name__}: {exc})") from None
        _saxon_state["proc"] = proc
        _saxon_state["pid"] = os.getpid()
    return _saxon_state["proc"]
