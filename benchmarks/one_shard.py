"""Shared by bench_shard_write.py and bench_shard_keep.py: one shard of many 16^3 chunks."""

from __future__ import annotations

import resource


def cpu_seconds() -> float:
    """This process's user + system CPU time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one_shard(chunks: int) -> dict:
    """A sharding spec putting all ``chunks`` (a power of two) in one shard of 4 minishards, gzip'd."""
    bits = chunks.bit_length() - 1
    return {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": bits - 2, "hash": "identity",
            "minishard_bits": 2, "shard_bits": 0, "minishard_index_encoding": "gzip", "data_encoding": "gzip"}


def grid_shape(chunks: int) -> tuple[int, int, int]:
    """The voxel shape of a grid of ``chunks`` 16^3 chunks, as cubic as powers of two allow."""
    bits = chunks.bit_length() - 1
    return tuple(16 << (bits // 3 + (1 if i < bits % 3 else 0)) for i in range(3))  # type: ignore[return-value]
