"""Tuning and probe tools on validation data only, built on the public API of models/."""
