"""The operator console: server-rendered pages on the functions of the operations API (docs/console.md)."""
