"""Request dependencies: database connection, authenticated principal, role checks.

An API key is accepted from the ``X-API-Key`` header or ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from store.apikeys import ApiPrincipal, Role, verify_api_key

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKeyHeader",
    description="API key (cf_<id>_<secret>) in the X-API-Key header",
)
bearer = HTTPBearer(
    auto_error=False, scheme_name="BearerKey",
    description="The same API key as a bearer token: Authorization: Bearer cf_<id>_<secret>",
)

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
DbConn = Annotated[AsyncConnection[Any], Depends(get_db)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": WWW_AUTHENTICATE},
    )


async def get_current_principal(
    conn: DbConn,
    api_key: Annotated[str | None, Depends(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiPrincipal:
    presented = api_key or (credentials.credentials if credentials is not None else None)
    if not presented:
        raise _unauthorized("missing API key (X-API-Key header or Authorization: Bearer)")
    principal = await verify_api_key(conn, presented.strip())
    if principal is None:
        raise _unauthorized("invalid or revoked API key")
    return principal


CurrentPrincipal = Annotated[ApiPrincipal, Depends(get_current_principal)]


def require_roles(*roles: Role | str) -> Callable[[ApiPrincipal], Awaitable[ApiPrincipal]]:
    """A dependency that lets through only principals holding one of ``roles`` (else 403)."""
    allowed = frozenset(Role(r) for r in roles)
    names = ", ".join(sorted(r.value for r in allowed))

    async def check(principal: CurrentPrincipal) -> ApiPrincipal:
        if principal.role not in allowed:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role.value!r} may not do this; needs one of: {names}",
            )
        return principal

    return check


SessionReader = Annotated[
    ApiPrincipal, Depends(require_roles(Role.BILLING, Role.OPERATOR, Role.ADMIN))
]
