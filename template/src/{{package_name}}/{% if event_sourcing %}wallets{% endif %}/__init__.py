"""Wallets: the example event-sourced aggregate (open, deposit, withdraw, close)."""
