"""Calls to other services that fail fast and recover: the outbound slice.

One :class:`~.client.OutboundClient` per dependency named in the settings, built at
start-up (lifespan.py) and handed to routes by :func:`~.dependencies.outbound_client`.
Each call passes a total deadline, a bulkhead (bulkhead.py), a circuit breaker
(breaker.py, pybreaker's state machine) and, when safe to repeat, retries with backoff
under a retry budget (retry.py, tenacity). See docs/outbound.md.
"""
