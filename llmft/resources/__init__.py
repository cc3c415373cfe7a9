"""Bundled resources for llmft (small data sets and the scripts that generate them)."""
