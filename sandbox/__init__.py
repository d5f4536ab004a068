"""Local stand-ins for the systems around the hub, for the demo and the tests. Not for production."""
