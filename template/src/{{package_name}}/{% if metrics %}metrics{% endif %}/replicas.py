"""Read replicas' lag and the reads each database served (core/replicas.py)."""

import math
from typing import get_args

from ..core.replicas import Database, ReadReason, Replica
from .instruments import DB_READS, DB_REPLICA_AVAILABLE, DB_REPLICA_LAG

# Where each kind of read goes: replicas serve only reads of routes that only read.
_DATABASE_OF: dict[ReadReason, Database] = {
    reason: "replica" if reason == "read only" else "primary" for reason in get_args(ReadReason)
}


class ReplicaMetrics:
    def __init__(self) -> None:
        # Children resolved once, each at 0 from the start: a read path costs one increment.
        self._reads = {
            (database, reason): DB_READS.labels(database, reason)
            for reason, database in _DATABASE_OF.items()
        }

    def replica_checked(self, replica: Replica) -> None:
        DB_REPLICA_AVAILABLE.labels(replica.name).set(1 if replica.available else 0)
        lag = replica.lag_seconds
        DB_REPLICA_LAG.labels(replica.name).set(math.nan if lag is None else lag)

    def read_routed(self, database: Database, reason: ReadReason) -> None:
        self._reads[database, reason].inc()
