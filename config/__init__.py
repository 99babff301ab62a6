"""Everything a deployment sets: Settings, the destination registry file, the Celery configuration."""
