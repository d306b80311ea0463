"""Cluster mode: apply/restore/status against a live Kubernetes API server, and the TrafficRouting controller.

This package is the only place that imports ``kubernetes`` (the official client); the rest of graylane
works on plain dicts and never needs a cluster.
"""
