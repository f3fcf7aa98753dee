"""Shared hypothesis settings for the algorithm tests (modest: the CI box has 2 cores)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "algorithms", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("algorithms")
