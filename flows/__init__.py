"""Wiring: the pipeline flow, the stage table and the CLI."""
