"""Claims behind Redis Sentinel, on a real primary, replica and three sentinels: a new
claim is on the replica before the trigger sends its message (a failover right after a
trigger cannot keep the message and lose the claim), and a replica that is down costs a
bounded wait, never the trigger."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from config.settings import RedisSentinelSettings, SecretSourceSettings, Settings
from devstack.sentinel import SentinelCluster
from worker.runtime import Runtime

pytestmark = pytest.mark.integration

PASSWORD = "claims-primary-pw-" + "7" * 8


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    with SentinelCluster(password=PASSWORD) as cluster:
        yield cluster


@pytest.fixture
def runtime(cluster: SentinelCluster) -> Iterator[Runtime]:
    settings = Settings(
        _env_file=None,
        redis_url=SecretStr(cluster.url),
        redis_sentinel=RedisSentinelSettings(master_name=cluster.master_name),
        secret_source=SecretSourceSettings(kind="generate"),
    )
    built = Runtime.build(settings)
    yield built
    built.redox.close()
    built.redis.close()


def waits_called(cluster: SentinelCluster) -> int:
    client = cluster.node_client(cluster.primary)
    try:
        stats = client.info("commandstats").get("cmdstat_wait", {})
    finally:
        client.close()
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def test_a_new_claim_is_on_the_replica_when_the_claim_returns(
    cluster: SentinelCluster, runtime: Runtime
) -> None:
    before = waits_called(cluster)
    claim = runtime.store.claim("dest-sentinel-1", trigger="operator")
    assert claim.created
    assert waits_called(cluster) == before + 1
    replica = cluster.node_client(cluster.replica)
    try:
        assert replica.get(runtime.keys.active("dest-sentinel-1")) == claim.rotation_id
    finally:
        replica.close()
    # A second trigger finds the claim: nothing new to replicate, no wait.
    assert not runtime.store.claim("dest-sentinel-1", trigger="operator").created
    assert waits_called(cluster) == before + 1


def test_a_replica_that_is_down_does_not_stop_a_trigger(
    cluster: SentinelCluster, runtime: Runtime
) -> None:
    cluster.replica.stop(kill=True)
    claim = runtime.store.claim("dest-sentinel-2", trigger="operator")
    assert claim.created
    assert runtime.store.active("dest-sentinel-2") == claim.rotation_id
