"""The authenticated caller, as later slices key on it (targeting, limits, tenants)."""

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str
    roles: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    tenant: str | None = None
    claims: Mapping[str, Any] = {}

    def has_roles(self, *roles: str) -> bool:
        return set(roles) <= self.roles
