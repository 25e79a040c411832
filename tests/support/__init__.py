"""Test support code (loopback servers, builders)."""
