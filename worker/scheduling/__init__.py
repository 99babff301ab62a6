"""Scheduling: due-time arithmetic (:mod:`.due`) and the Redis schedule (:mod:`.store`)."""

from __future__ import annotations

from worker.scheduling.due import catchup_due, first_due, fit_window, next_due
from worker.scheduling.store import ScheduleStore, SyncReport

__all__ = ["ScheduleStore", "SyncReport", "catchup_due", "first_due", "fit_window", "next_due"]
