"""Liveness (`/healthz`) and readiness (`/readyz`: the database, and Redis when configured)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.db import SessionDep

router = APIRouter(tags=["health"])

# A probe must answer even when a server hangs instead of refusing: each check gets this long.
CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/healthz")
def healthz(session: SessionDep) -> dict[str, str]:
    """Answer 200 when the service and its database respond."""
    session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    return {"status": "ok"}


def _first_line(error: BaseException) -> str:
    # Driver messages go on for lines (SQL, links); the first one says what failed.
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else 'no message'}"


def _ping_database(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


async def database_problem(engine: Engine) -> str | None:
    try:
        await asyncio.wait_for(asyncio.to_thread(_ping_database, engine), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except SQLAlchemyError as error:
        return _first_line(error)
    return None


async def redis_problem(url: str) -> str | None:
    client = Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        await asyncio.wait_for(client.ping(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except (RedisError, OSError) as error:
        return _first_line(error)
    finally:
        await client.aclose()
    return None


@router.get("/readyz")
async def readyz(request: Request, response: Response) -> dict[str, object]:
    """Answer 200 when the database (and Redis, when configured) answer; else 503 with the reasons."""
    checks = {"database": database_problem(request.app.state.engine)}
    redis_url = request.app.state.settings.redis_url
    if redis_url:
        checks["redis"] = redis_problem(redis_url)
    problems = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    if any(problems.values()):
        response.status_code = 503
    return {
        "status": "unavailable" if any(problems.values()) else "ok",
        "checks": {name: problem or "ok" for name, problem in problems.items()},
    }
