"""Evaluation: classification and text metrics (reference implementations), generation."""
