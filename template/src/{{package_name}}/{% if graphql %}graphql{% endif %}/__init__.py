"""The GraphQL API: the items over the same service layer as REST, with subscriptions."""
