"""Runnable examples: ``python -m pydags.examples.tutorial``."""
