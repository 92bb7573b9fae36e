"""Sinks: where received media goes (recordings)."""
