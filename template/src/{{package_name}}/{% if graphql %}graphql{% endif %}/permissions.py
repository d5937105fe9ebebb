"""Field-level permissions: who may read a field, checked before its resolver runs."""

from typing import Any

import strawberry
from strawberry.permission import BasePermission


class AdminOnly(BasePermission):
    message = "only admins may read this field"
    error_extensions = {"code": "FORBIDDEN"}  # noqa: RUF012 (strawberry's own attribute)

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is not None and principal.has_roles("admin")
