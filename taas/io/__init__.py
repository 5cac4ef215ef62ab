"""File formats and file-system helpers that every other layer may use (CSV tables, paths)."""
