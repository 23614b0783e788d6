"""Typed dependencies: how routes reach the lifespan's resources (never module globals).

Each is ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in
its thread pool: a thread hand-off on every request (the app-wide ``authorize`` needs
``get_state``) for what is an attribute look-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from fastapi import Depends, Request

from services.aggregator.broker import BrokerLink
from services.aggregator.config import Settings
from services.aggregator.metrics import ApiMetrics
from services.aggregator.registry_cache import RegistryCache
from services.aggregator.state import STATE_KEY, AppState


async def get_state(request: Request) -> AppState:
    state = getattr(request.state, STATE_KEY, None)
    if not isinstance(state, AppState):
        raise TypeError("the app was started without its lifespan")
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


async def get_pool(state: StateDep) -> asyncpg.Pool:
    return state.pool


async def get_broker(state: StateDep) -> BrokerLink:
    return state.broker


async def get_registry(state: StateDep) -> RegistryCache:
    return state.registry


async def get_metrics(state: StateDep) -> ApiMetrics:
    return state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
BrokerDep = Annotated[BrokerLink, Depends(get_broker)]
RegistryDep = Annotated[RegistryCache, Depends(get_registry)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


async def get_connection(pool: PoolDep) -> AsyncIterator[PoolConnectionProxy]:
    async with pool.acquire() as conn:
        yield conn


# FastAPI evaluates this annotation at run time, where PoolConnectionProxy is not
# subscriptable; windpark.db.Connection is for the type checker only.
ConnectionDep = Annotated[PoolConnectionProxy, Depends(get_connection)]
