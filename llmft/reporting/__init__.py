"""Reporting: console output, progress, the metrics log and plots, experiment trackers."""
