"""Inbound channels, one package each (``rest``, ``fitconnect``). A channel depends on the core only, never on
another channel, and is wired into the hub by the composition root (:mod:`xhub.registry`)."""
