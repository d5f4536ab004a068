"""Hostile inputs over every way in: each case asserts the precise refusal, that nothing accepted was lost,
and that the hub still works afterwards (docs/security.md has the threat model and the tally)."""
