"""A local FIT-Connect delivery service (Submission API 1.1.3) for the demo and the tests. Not for production.

::

    from sandbox.fitconnect import Emulator, create_fitconnect_emulator
    emu = Emulator(state_dir)                        # opens or creates the state (SQLite + files)
    app = create_fitconnect_emulator(emu)            # FastAPI app
    dest_id = emu.add_destination(encryption_jwk, signature_jwk, ["urn:de:fim:leika:leistung:99050012104000"])
    client_id, client_secret = emu.add_client("sender", destinations=[dest_id])

Modules: :mod:`.emulator` (state, admin, tokens), :mod:`.submissions` (the flows), :mod:`.status` (status
enum and transitions), :mod:`.sets` (SETs), :mod:`.callbacks`, :mod:`.problem_types`, :mod:`.app` (HTTP),
:mod:`.admin` (``/_admin/``), :mod:`.db` (SQLite). Documentation: ``docs/fitconnect-emulator.md``.
"""

from __future__ import annotations

from sandbox.fitconnect.app import create_fitconnect_emulator
from sandbox.fitconnect.callbacks import sign as callback_signature
from sandbox.fitconnect.emulator import MAX_ATTACHMENT_BYTES, Client, Emulator
from sandbox.fitconnect.status import Status

__all__ = ["MAX_ATTACHMENT_BYTES", "Client", "Emulator", "Status", "callback_signature", "create_fitconnect_emulator"]
