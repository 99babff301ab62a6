"""Prometheus metrics: counters the workers write to Redis (:mod:`.recorder`), read back and
exported at every scrape (:mod:`.collector`, served by ``rotator metrics``)."""

from worker.metrics.collector import RedisCollector
from worker.metrics.recorder import STEPS, MetricsRecorder

__all__ = ["STEPS", "MetricsRecorder", "RedisCollector"]
