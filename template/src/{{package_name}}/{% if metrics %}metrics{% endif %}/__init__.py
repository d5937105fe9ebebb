"""Prometheus metrics: RED per route, saturation, process health, served at ``/metrics``.

Names follow ``app_<slice>_<name>``: the fixed ``app`` prefix keeps dashboards and alert
rules the same for every service built from this template (Prometheus's ``job`` label
tells services apart). A slice declares its metrics in its own package.
"""
