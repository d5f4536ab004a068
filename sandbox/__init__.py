"""The sandbox: local stand-ins for the systems around the hub (a trade register, a vehicle registry, a
recording sink), the FIT-Connect delivery-service emulator, the chaos tools they share, and the demo that
runs the product against them. For the demo and the tests; not for production.

The sandbox may import the product; the product never imports the sandbox (an import-linter contract).
``xhub demo`` and ``xhub sandbox …`` join the command line through the ``xhub.commands`` entry point group.
"""
