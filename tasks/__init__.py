"""Prefect tasks: thin wrappers that call one domain step each."""
