"""The watch after a switch: failed deliveries are searched per environment, on a schedule.

:mod:`.store` holds which rotations are watched and when each is next looked at;
:mod:`.poll` searches an environment's failed deliveries once for every rotation watched
there and gives each its verdict (still watching, clean, failing, or drift).
"""
