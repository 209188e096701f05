"""Engines apply a ``ClusterPlan``: directly with the Docker SDK, or through Pulumi."""
