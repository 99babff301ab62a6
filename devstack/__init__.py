"""Local tooling around the service: the dev stack (redis-server, sandbox, workers, beat and
Flower as child processes), ``rotator demo``, the shared test rig, crash injection and the
Redis read-back used by secret scans. Shipped with the ``sandbox`` extra; the production
image leaves it out, and ``worker`` never imports it (except ``rotator demo``, lazily)."""
