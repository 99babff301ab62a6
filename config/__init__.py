"""Everything a deployment sets: Settings, the destination registry, the Celery configuration."""
