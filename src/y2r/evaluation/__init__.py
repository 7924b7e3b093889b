"""Evaluation against ground truth: standard metrics for each stage's output."""
