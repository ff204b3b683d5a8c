"""Start-up recovery: a job held by a dead process of this host is claimable at once; others wait."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest

from imagefunnel.store import Store
from imagefunnel.store.models import utcnow
from imagefunnel.store.queue import JobQueue
from imagefunnel.workers import owner_is_dead_here, release_dead_local_leases


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leases_of_dead_local_workers_are_released_and_the_job_is_claimed_again(store: Store) -> None:
    queue = JobQueue(store)
    host = socket.gethostname()
    for job_id in ("dead", "alive", "elsewhere"):
        queue.enqueue(job_id=job_id, name=job_id, spec_json="{}", deliver=1)
    owners = {
        "dead": f"{host}:{_dead_pid()}:x",
        "alive": f"{host}:{os.getpid()}:y",
        "elsewhere": "other-host:1:z",
    }
    for owner in owners.values():
        claim = queue.claim(owner, lease_s=600, now=utcnow() - timedelta(seconds=1))
        assert claim is not None
    assert owner_is_dead_here(owners["dead"]) and not owner_is_dead_here(owners["elsewhere"])
    assert queue.claim("fresh", lease_s=30) is None  # every lease is still running
    assert release_dead_local_leases(store) == [store.job(j).id for j in ("dead",)]
    claim = queue.claim("fresh", lease_s=30)
    assert claim is not None and (claim.job_id, claim.resumed) == ("dead", True)
    assert queue.claim("fresh", lease_s=30) is None
