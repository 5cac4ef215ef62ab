"""Helpers the Snakemake workflow calls: configuration validation and path layout."""
