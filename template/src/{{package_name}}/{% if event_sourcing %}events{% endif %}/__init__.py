"""Event sourcing: the event store, aggregates, projections and the outbox to a broker."""
