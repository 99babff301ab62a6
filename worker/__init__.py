"""The running redox-rotator service: Celery app, CLI, Redox client, Redis store, sandbox."""
