"""``xhub keys``: one group for the FIT-Connect destinations' key pairs (:mod:`xhub.cli.fitconnect`) and the
master and data keys of encryption at rest (:mod:`xhub.cli.dataprotection`)."""

from __future__ import annotations

from xhub.cli.dataprotection import (
    keys_new_master_key,
    keys_reseal,
    keys_rotate_data_key,
    keys_rotate_master_key,
    keys_status,
)
from xhub.cli.fitconnect import keys_app

__all__ = ["keys_app"]

keys_app.info.help = "Keys: FIT-Connect destinations' key pairs, and the master and data keys of encryption at rest."
keys_app.command("new-master-key")(keys_new_master_key)
keys_app.command("rotate-data-key")(keys_rotate_data_key)
keys_app.command("rotate-master-key")(keys_rotate_master_key)
keys_app.command("reseal")(keys_reseal)
keys_app.command("status")(keys_status)
