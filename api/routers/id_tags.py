"""The id token list the gateway authorises with (docs/registry.md): RFID cards, app
tokens, PINs and central tokens, with status, expiry, group (parent id tag), customer
reference and membership tier. Under ``/v1/id-tags`` beside an id tag's payment method
(``/v1/id-tags/{id_tag}/payment-method``): one resource tree, named as OCPP 1.6 and the
``id_tags`` table name it. Write: operator, admin; read: operator, billing, admin.

The gateway caches a token's entry for ``id_tag_cache_ttl_s`` (30 s by default) per
replica: a token blocked here is refused at the latest that long after."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import DbConn, IdTokenReader, RegistryWriter
from api.params import ID_PATTERN, MAX_ID_LENGTH, RegistryLimit, id_cursor, patch_changes
from api.problems import (
    AUTHENTICATED,
    CONFLICT,
    NOT_FOUND,
    UNREADABLE_BODY,
    found,
    registry_problems,
)
from api.schemas import public_of
from api.schemas.id_tokens import (
    ID_TOKEN_PATTERN,
    IdTokenCreate,
    IdTokenPublic,
    IdTokensPage,
    IdTokenUpdate,
    Status,
)
from api.schemas.payment_methods import EXAMPLE_ID_TAG
from store import id_tokens as token_store
from store import registry

router = APIRouter(prefix="/v1/id-tags", tags=["registry"], responses=AUTHENTICATED)

IdTagPath = Annotated[
    str,
    Path(pattern=ID_TOKEN_PATTERN, description="The id tag / idToken", examples=[EXAMPLE_ID_TAG]),
]
TextQuery = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]


def _public(record: token_store.IdTokenRecord) -> IdTokenPublic:
    return public_of(IdTokenPublic, record)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=IdTokenPublic,
    summary="Add an id token to the list",
    description="409 when the token is in the list already (change it with PATCH).",
    responses={**CONFLICT, **UNREADABLE_BODY},
)
async def create_id_tag(
    body: IdTokenCreate, _principal: RegistryWriter, conn: DbConn
) -> IdTokenPublic:
    with registry_problems():
        record = await token_store.create_id_token(conn, body.id_tag, body.model_dump())
    return _public(record)


@router.get("", response_model=IdTokensPage, summary="List id tokens, by token")
async def list_id_tags(
    _principal: IdTokenReader,
    conn: DbConn,
    token_status: Annotated[
        Status | None, Query(alias="status", description="Only this status")
    ] = None,
    parent_id_tag: Annotated[
        str | None, Query(pattern=ID_TOKEN_PATTERN, description="Only this group's members")
    ] = None,
    customer_ref: TextQuery = None,
    cursor: Annotated[str | None, id_cursor(ID_TOKEN_PATTERN)] = None,
    limit: RegistryLimit = registry.DEFAULT_LIMIT,
) -> IdTokensPage:
    page = await token_store.list_id_tokens(
        conn,
        status=token_status,
        parent_id_tag=parent_id_tag,
        customer_ref=customer_ref,
        after=cursor,
        limit=limit,
    )
    return IdTokensPage(items=[_public(t) for t in page.items], next_cursor=page.next_after)


@router.get("/{id_tag}", response_model=IdTokenPublic, summary="One id token", responses=NOT_FOUND)
async def get_id_tag(id_tag: IdTagPath, _principal: IdTokenReader, conn: DbConn) -> IdTokenPublic:
    record = found(await token_store.get_id_token(conn, id_tag), f"id tag {id_tag!r}")
    return _public(record)


@router.patch(
    "/{id_tag}",
    response_model=IdTokenPublic,
    summary="Change an id token (block it, extend it, move it to a group or tier)",
    description="Only the fields sent change; `expiry_date`, `parent_id_tag`, "
    "`customer_ref` and `customer_group` may be cleared with null.",
    responses={**NOT_FOUND, **UNREADABLE_BODY},
)
async def update_id_tag(
    id_tag: IdTagPath, body: IdTokenUpdate, _principal: RegistryWriter, conn: DbConn
) -> IdTokenPublic:
    changes = patch_changes(body, not_null=("token_type", "status", "membership_tier"))
    with registry_problems():
        record = await token_store.update_id_token(conn, id_tag, changes)
    return _public(record)


@router.delete(
    "/{id_tag}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an id token from the list (idempotent: 204 whether it was there)",
    description="The gateway answers Invalid for it from then on (after its cache); "
    "sessions keep naming it; its payment method is not touched.",
)
async def delete_id_tag(id_tag: IdTagPath, _principal: RegistryWriter, conn: DbConn) -> Response:
    await token_store.delete_id_token(conn, id_tag)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
