"""Tenants: who a request acts for, and rows no other tenant can reach (docs/tenancy.md)."""
