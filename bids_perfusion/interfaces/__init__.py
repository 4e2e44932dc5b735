"""Nipype interfaces: read files, call the numeric core, write files. No numerics here."""
