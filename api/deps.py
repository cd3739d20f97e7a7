"""Request dependencies: database connection, authenticated principal, role checks.

An API key is accepted from the ``X-API-Key`` header or ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.problems import TYPE_RATE_LIMITED, ProblemError
from api.ratelimit import AuthFailureLimiter
from store.api_keys import ApiPrincipal, Role, verify_api_key

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKeyHeader",
    description="API key (cf_<id>_<secret>) in the X-API-Key header",
)
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="BearerKey",
    description="The same API key as a bearer token: Authorization: Bearer cf_<id>_<secret>",
)

PRINTABLE_KEY = re.compile(r"[\x21-\x7e]{1,400}")
WWW_AUTHENTICATE = 'Bearer realm="chargeflow", ApiKey header="X-API-Key"'


def get_pool(request: Request) -> AsyncConnectionPool[Any]:
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    return pool


async def get_db(
    request: Request, pool: Annotated[AsyncConnectionPool[Any], Depends(get_pool)]
) -> AsyncIterator[AsyncConnection[Any]]:
    async with pool.connection(timeout=request.app.state.config.pool_timeout_s) as conn:
        yield conn


DbPool = Annotated[AsyncConnectionPool[Any], Depends(get_pool)]
# Released when the handler returns, before the response starts: the audit middleware
# takes a connection of its own there, and holding both would starve the pool (each of
# pool-size concurrent writes waiting for a second connection).
DbConn = Annotated[AsyncConnection[Any], Depends(get_db, scope="function")]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        status.HTTP_401_UNAUTHORIZED,
        detail,
        headers={"WWW-Authenticate": WWW_AUTHENTICATE},
    )


def client_address(request: Request) -> str:
    """The peer's address (uvicorn applies X-Forwarded-For from trusted proxies only)."""
    return request.client.host if request.client is not None else "unknown"


async def get_current_principal(
    request: Request,
    pool: DbPool,
    api_key: Annotated[str | None, Depends(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiPrincipal:
    presented = api_key or (credentials.credentials if credentials is not None else None)
    if not presented:
        raise _unauthorized("missing API key (X-API-Key header or Authorization: Bearer)")
    limiter: AuthFailureLimiter = request.app.state.auth_limiter
    client = client_address(request)
    retry_after = await limiter.retry_after_s(client)
    if retry_after is not None:
        raise ProblemError(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed authentications from this address; retry in {retry_after} s",
            type_=TYPE_RATE_LIMITED,
            headers={"Retry-After": str(retry_after)},
        )
    presented = presented.strip()
    # Keys are printable ASCII; anything else (control characters, NUL) is simply wrong.
    principal = None
    if PRINTABLE_KEY.fullmatch(presented):
        # A connection of its own, only now: requests without a key or from a limited
        # address never take one from the pool.
        async with pool.connection(timeout=request.app.state.config.pool_timeout_s) as conn:
            principal = await verify_api_key(conn, presented)
    if principal is None:
        await limiter.record_failure(client)
        raise _unauthorized("invalid or revoked API key")
    # For the access log: which key made the request (its id, never the secret).
    request.state.api_key_id = principal.key_id
    # For the audit log of writes (api.audit): the key's role.
    request.state.api_key_role = principal.role.value
    return principal


CurrentPrincipal = Annotated[ApiPrincipal, Depends(get_current_principal)]


def require_roles(*roles: Role | str) -> Callable[[ApiPrincipal], Awaitable[ApiPrincipal]]:
    """A dependency that lets through only principals holding one of ``roles`` (else 403)."""
    allowed = frozenset(Role(r) for r in roles)
    names = ", ".join(sorted(r.value for r in allowed))

    async def check(principal: CurrentPrincipal) -> ApiPrincipal:
        if principal.role not in allowed:
            raise ProblemError(
                status.HTTP_403_FORBIDDEN,
                f"role {principal.role.value!r} may not do this; needs one of: {names}",
            )
        return principal

    return check


SessionReader = Annotated[
    ApiPrincipal, Depends(require_roles(Role.BILLING, Role.OPERATOR, Role.ADMIN))
]
# Money: payments, refunds, issued CDRs, held sessions, statements.
BillingDesk = Annotated[ApiPrincipal, Depends(require_roles(Role.BILLING, Role.ADMIN))]
# Trying tariffs on sessions before they go live: the billing desk and operations.
TariffTester = Annotated[
    ApiPrincipal, Depends(require_roles(Role.BILLING, Role.OPERATOR, Role.ADMIN))
]
# Live load and status history: operations and maintenance.
OperationsReader = Annotated[
    ApiPrincipal, Depends(require_roles(Role.OPERATOR, Role.MAINTENANCE, Role.ADMIN))
]
# Fault alerts and connector health: maintenance and operations read them and act on
# them (acknowledge, resolve), as does admin.
AlertHandler = Annotated[
    ApiPrincipal, Depends(require_roles(Role.MAINTENANCE, Role.OPERATOR, Role.ADMIN))
]
# Tariffs and where they apply: the billing desk and admin change them (audited by the
# key's name); operations reads them too.
TariffWriter = Annotated[ApiPrincipal, Depends(require_roles(Role.BILLING, Role.ADMIN))]
TariffReader = Annotated[
    ApiPrincipal, Depends(require_roles(Role.BILLING, Role.OPERATOR, Role.ADMIN))
]
# Remote commands to stations (remote start/stop, reset, ...): operations and admin.
CommandOperator = Annotated[ApiPrincipal, Depends(require_roles(Role.OPERATOR, Role.ADMIN))]
# The registry (stations, connectors, sites, meters): operations and admin write,
# maintenance reads too; decommissioning a station and giving it a new password (which
# cut a station off until it is reconfigured) are admin only. Id tokens: operations and
# admin write; the billing desk reads them too (customer references).
RegistryReader = Annotated[
    ApiPrincipal, Depends(require_roles(Role.OPERATOR, Role.MAINTENANCE, Role.ADMIN))
]
RegistryWriter = Annotated[ApiPrincipal, Depends(require_roles(Role.OPERATOR, Role.ADMIN))]
RegistryAdmin = Annotated[ApiPrincipal, Depends(require_roles(Role.ADMIN))]
IdTokenReader = Annotated[
    ApiPrincipal, Depends(require_roles(Role.OPERATOR, Role.BILLING, Role.ADMIN))
]
# The audit log of every write through the API: admin only.
AuditReader = Annotated[ApiPrincipal, Depends(require_roles(Role.ADMIN))]
# Usage reports (utilisation, energy, revenue): operations and the billing desk.
ReportReader = Annotated[
    ApiPrincipal, Depends(require_roles(Role.OPERATOR, Role.BILLING, Role.ADMIN))
]
