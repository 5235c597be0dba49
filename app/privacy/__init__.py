"""Erasure: a user's data out of the database, the caches and the checkpoints' metadata."""
