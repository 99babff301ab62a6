"""Helpers for tests, the chaos suite and the benchmarks: read back everything the service
wrote, to scan it for secret values (structlog's ``testing`` module is the model)."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

__all__ = ["decoded_messages", "dump_redis"]


def dump_redis(redis_client: redis.Redis) -> dict[str, list[str]]:
    """Every value of every key (any type), as text, by key name."""
    dump: dict[str, list[str]] = {}
    client: Any = redis_client  # redis-py's reply types are unions; this client decodes
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values: list[Any]
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [f"{k}={v}" for k, v in client.hgetall(key).items()]
        elif kind == "list":
            values = list(client.lrange(key, 0, -1))
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [f"{m}={s}" for m, s in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [json.dumps(f) for _, f in client.xrange(key)]
        else:
            values = [f"<{kind}>"]
        dump[str(key)] = [str(key), *(str(v) for v in values if v is not None)]
    return dump


def decoded_messages(texts: list[str]) -> list[str]:
    """Kombu hides message bodies in base64: decode every such body found in ``texts``."""
    found: list[str] = []
    for text in texts:
        for candidate in (text, text.split("=", 1)[-1]):
            try:
                data = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(data, list) and data and isinstance(data[0], dict):
                data = data[0]  # unacked entries are [message, exchange, routing_key]
            if isinstance(data, dict) and isinstance(data.get("body"), str):
                try:
                    found.append(base64.b64decode(data["body"]).decode(errors="replace"))
                except ValueError:
                    found.append(data["body"])
    return found
