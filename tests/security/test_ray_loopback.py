"""Local Ray (``init_ray(None, ...)``) stays on loopback: its GCS and node address are 127.0.0.1 and it
starts no dashboard."""

from __future__ import annotations

import ray

from unimarl.trainers.collect.backend import init_ray


def test_local_ray_binds_loopback_without_a_dashboard() -> None:
    if ray.is_initialized():
        ray.shutdown()
    init_ray(None, num_cpus=1)
    try:
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
        assert ray._private.worker.global_worker.node.address_info.get("webui_url") in (None, "")
    finally:
        ray.shutdown()
