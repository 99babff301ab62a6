"""Module-level Celery app for ``celery -A worker.celery_entry:app ...`` (Flower, compose probes).

The service's own commands (``rotator worker``, ``rotator beat``) build the app from one
Settings object instead; this module does the same once, from the environment.
"""

from __future__ import annotations

from config.settings import load_settings
from worker.celery_app import create_app

app = create_app(load_settings())
