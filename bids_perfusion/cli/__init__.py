"""Command-line entry points (argument parsing only; heavy imports happen inside main)."""
