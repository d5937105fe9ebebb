"""Read-through caching: an in-process tier, Redis behind it when the service has Redis.

See docs/caching.md for what is cached, how entries are invalidated and how to cache a
new read.
"""
