"""Start-up recovery: jobs left ``running`` by a dead worker process on this host are claimable now.

A worker that dies stops renewing its lease, and another worker re-claims the job once the lease
runs out (:mod:`imagefunnel.store.queue`). A single process restarted after a crash need not wait
for that: worker ids are ``host:pid:nonce``, so a lease held by a process of this host that no
longer exists can be expired at once. Leases of other hosts, and of live processes, are left alone
(a reused pid only means waiting for the lease to run out, as before).
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from sqlalchemy import select, update

from imagefunnel.store import Store
from imagefunnel.store.models import JobRow

__all__ = ["owner_is_dead_here", "release_dead_local_leases"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def owner_is_dead_here(owner: str, *, host: str | None = None) -> bool:
    """Whether worker id ``owner`` (``host:pid:...``) names a process of this host that is gone."""
    host = host or socket.gethostname()
    owner_host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    return (
        owner_host == host
        and pid_text.isdigit()
        and int(pid_text) != os.getpid()
        and not _alive(int(pid_text))
    )


def release_dead_local_leases(store: Store, *, host: str | None = None) -> list[str]:
    """Expire the leases of running jobs whose worker process on this host is gone; their ids."""
    host = host or socket.gethostname()
    with store.session() as s:
        held = s.execute(
            select(JobRow.id, JobRow.lease_owner).where(
                JobRow.status == "running", JobRow.lease_owner.is_not(None)
            )
        ).all()
        dead = [job_id for job_id, owner in held if owner and owner_is_dead_here(owner, host=host)]
        if dead:
            s.execute(
                update(JobRow)
                .where(JobRow.id.in_(dead), JobRow.status == "running")
                .values(lease_expires_at=datetime.fromtimestamp(0, UTC))
            )
    return dead
