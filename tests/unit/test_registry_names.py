"""The registry's enumerations have one spelling everywhere: the API's schemas, the
stores, the migration's CHECKs and the smart-charging allocator's membership tiers."""

from __future__ import annotations

import re
from typing import get_args

from api.schemas.id_tokens import Status, Tier, TokenType
from api.schemas.meters import Role
from smart_charging.priority import MEMBERSHIP_TIERS
from store.id_tokens import STATUSES, TOKEN_TYPES
from store.meters import METER_ROLES
from tests.support.paths import ROOT

MIGRATION = (ROOT / "store" / "migrations" / "versions" / "0026_registry.py").read_text()


def _check(column: str) -> tuple[str, ...]:
    found = re.search(rf"CHECK \({column} IN \(([^)]*)\)\)", MIGRATION)
    assert found is not None, column
    return tuple(v.strip().strip("'") for v in found.group(1).split(","))


def test_membership_tiers_are_the_allocators() -> None:
    assert get_args(Tier) == tuple(MEMBERSHIP_TIERS) == _check("membership_tier")
    ranks = [MEMBERSHIP_TIERS[name] for name in get_args(Tier)]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_token_types_statuses_and_meter_roles_agree() -> None:
    assert get_args(TokenType) == TOKEN_TYPES == _check("token_type")
    assert get_args(Status) == STATUSES
    assert get_args(Role) == METER_ROLES == _check("role")
