"""Whether each running worker has loaded the configuration the operator rendered. Tags and
initial_upstreams reach a running worker without a restart: the kubelet rewrites the mounted
worker.hcl, boundary-worker-supervisor sees it change and sends SIGHUP, Boundary reloads them and
reports its config tags, among them `config_revision`. A worker still reporting another revision
RELOAD_GRACE_SECONDS after the operator first saw the difference did not reload (an image
without the supervisor): it is restarted, with a drain, one pod at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from boundary_api import Worker
from boundary_operator import naming

RELOAD_GRACE_SECONDS = 180.0
"""The kubelet refreshes a ConfigMap volume on its periodic pod sync (about a minute by
default), then the worker reports its new tags within its 10 s routing-info interval."""

Replica = tuple[str, int]
"""A BoundaryPKIWorker's uid and an ordinal."""


def reported_revision(worker: Worker) -> str:
    return next(iter(worker.config_tags.get(naming.CONFIG_REVISION_TAG, [])), "")


@dataclass
class ReloadWatch:
    """Since when each replica's worker has reported a revision other than the rendered one.
    Kept in memory for the operator's lifetime: after a restart the grace starts again, which
    only delays a restart that an image without the supervisor needs."""

    clock: Callable[[], float] = time.monotonic
    _since: dict[Replica, tuple[str, float]] = field(default_factory=dict)

    def waited(self, replica: Replica, wanted: str) -> float:
        """Seconds the replica has reported another revision than `wanted` (0 on first sight,
        and again when `wanted` changes)."""
        now = self.clock()
        seen = self._since.get(replica)
        if seen is None or seen[0] != wanted:
            self._since[replica] = (wanted, now)
            return 0.0
        return now - seen[1]

    def settled(self, replica: Replica) -> None:
        self._since.pop(replica, None)
