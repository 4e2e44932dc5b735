"""Statistics on maps: region-of-interest summaries and group-level tests."""
