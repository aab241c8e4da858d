"""The server tests' simulated provider: one per module, reset before each test."""

from __future__ import annotations

from tests.integration.fixtures import simulator_fixtures

from .helpers import KEY

shared_sim, sim = simulator_fixtures("server", api_key=KEY)
