"""How the gateway reaches Redis: one server (`redis://`, `rediss://`, `unix://`) or a Redis Cluster
(`redis+cluster://host:port[,host:port...]`, the seed nodes; `redis+clusters://` for TLS).

On a cluster no command may name keys of two hash slots: every key is built in `gateway.pipeline.queue.Keys`
(stream partitions and rate-limit pairs carry hash tags), reads over several stream partitions are
issued one partition at a time (`queue.read`), and per-conversation fan-out uses sharded pub/sub
(SPUBLISH/SSUBSCRIBE) so a chat event travels only to the node that owns its channel. Broadcasts
to every process (rights ended, outbox wake-ups) stay on plain PUBLISH, which a cluster relays to
all nodes.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster

CLUSTER_SCHEMES = ("redis+cluster", "redis+clusters")


def is_cluster_url(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def cluster_seeds(url: str) -> list[tuple[str, int]]:
    """The seed nodes of a `redis+cluster://h:p,h:p` URL (a node without a port is on 6379)."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    seeds = []
    for part in filter(None, (p.strip() for p in netloc.split(","))):
        if part.startswith("["):  # [ipv6]:port
            host, _, port = part[1:].partition("]")
            port = port.removeprefix(":") or "6379"
        else:
            host, _, port = part.partition(":")
            port = port or "6379"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"cluster node {part!r} must look like host:port")
        seeds.append((host, int(port)))
    if not seeds:
        raise ValueError("a redis+cluster:// URL names at least one host:port")
    return seeds


def _credentials(url: str) -> dict:
    parts = urlsplit(url)
    out = {}
    if parts.username:
        out["username"] = unquote(parts.username)
    if parts.password:
        out["password"] = unquote(parts.password)
    return out


def connect_cluster(url: str, *, max_connections: int) -> RedisCluster:
    """An asyncio RedisCluster client over the URL's seed nodes; `max_connections` is per node."""
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_seeds(url)],
        max_connections=max_connections, socket_connect_timeout=5,
        ssl=url.lower().startswith("redis+clusters://"), **_credentials(url))


async def ready(client) -> None:
    """Load a cluster client's slot map now (else its first command does): pub/sub connections pick
    their node from it, and one opened before any command would fail once. Nothing for one server;
    a cluster that is not reachable yet is only logged (the first command retries)."""
    if not isinstance(client, RedisCluster):
        return
    from redis.exceptions import RedisError

    try:
        await client.initialize()
    except (RedisError, OSError) as exc:
        from gateway.app.log import get_logger

        get_logger(__name__).warning("redis cluster not reachable yet", error=str(exc))


def connect_small(url: str, **kwargs):
    """A small asyncio client for a one-off command-line task, for either kind of URL."""
    if is_cluster_url(url):
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster_seeds(url)],
                            ssl=url.lower().startswith("redis+clusters://"), **_credentials(url), **kwargs)
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, **kwargs)


def connect_small_sync(url: str, **kwargs):
    """The blocking client for command-line checks (`gateway health`), for either kind of URL."""
    if is_cluster_url(url):
        from redis.cluster import ClusterNode as SyncNode
        from redis.cluster import RedisCluster as SyncCluster

        return SyncCluster(startup_nodes=[SyncNode(h, p) for h, p in cluster_seeds(url)],
                           ssl=url.lower().startswith("redis+clusters://"), **_credentials(url), **kwargs)
    import redis

    return redis.Redis.from_url(url, **kwargs)


def is_cluster(client) -> bool:
    """True for a cluster client (or one of its pipelines)."""
    from redis.asyncio.cluster import ClusterPipeline

    return isinstance(client, (RedisCluster, ClusterPipeline))


def shard_publish(client, channel: str, data: str):
    """Publish to a channel the chat hub listens on (`ChatHub`): PUBLISH, or SPUBLISH on a cluster
    (only the channel's node carries it). On a client it returns an awaitable; on a pipeline it
    queues the command."""
    return client.spublish(channel, data) if is_cluster(client) else client.publish(channel, data)


__all__ = ["cluster_seeds", "connect_cluster", "connect_small", "connect_small_sync", "is_cluster", "is_cluster_url",
           "shard_publish"]
