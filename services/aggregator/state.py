"""The resources one running API holds, born and closed in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.aggregator.broker import BrokerLink
from services.aggregator.config import Settings
from services.aggregator.login import LoginService
from services.aggregator.metrics import ApiMetrics
from services.aggregator.registry_cache import RegistryCache


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    pool: asyncpg.Pool
    broker: BrokerLink
    registry: RegistryCache
    metrics: ApiMetrics
    # Token checks (key ring, policy) and the token endpoint's logins and limits.
    auth: LoginService


# The key under which the lifespan hands AppState to every request (request.state).
STATE_KEY = "windpark"
