"""The authenticated caller, as later slices key on it (targeting, limits, tenants)."""

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str
    roles: frozenset[str] = frozenset()
    # OAuth scopes say what the client may do on the user's behalf; they are requested by
    # the client, so they never grant roles.
    scopes: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    tenant: str | None = None
    claims: Mapping[str, Any] = {}

    def has_roles(self, *roles: str) -> bool:
        return set(roles) <= self.roles

    def has_scopes(self, *scopes: str) -> bool:
        return set(scopes) <= self.scopes
