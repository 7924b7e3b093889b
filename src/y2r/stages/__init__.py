"""Stages: ingest -> camera -> tracks / hands -> episode (see base.py)."""
