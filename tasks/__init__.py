"""Celery tasks: thin shells over the workflows in ``worker`` (IDs in, workflow call out)."""
