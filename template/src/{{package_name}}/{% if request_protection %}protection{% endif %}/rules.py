"""Deny rules (client networks, user agents, paths) from settings and a reloadable file.

The file is the operator's quick answer to an abusive client: edit it (a mounted
ConfigMap, a file on the host) and the rules apply within a second, without a restart.
A file that cannot be read or parsed keeps the last good rules and says so in the log.
"""

import ipaddress
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import ValidationError

from .settings import DenyRules

logger = structlog.stdlib.get_logger(__name__)

# How often the file's modification time is looked at.
RELOAD_CHECK_SECONDS = 1.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CompiledRules:
    clients: tuple[Network, ...]
    user_agents: tuple[re.Pattern[str], ...]
    paths: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, *sources: DenyRules) -> "CompiledRules":
        # Compiled one by one: a pattern may carry flags of its own, "(?i)bot".
        return cls(
            clients=tuple(network for rules in sources for network in rules.clients),
            user_agents=tuple(re.compile(p) for rules in sources for p in rules.user_agents),
            paths=tuple(re.compile(p) for rules in sources for p in rules.paths),
        )

    def match(self, client: str | None, user_agent: str, path: str) -> str | None:
        """The kind of rule the request matches (``client``, ``user_agent``, ``path``)."""
        if self.clients and client is not None:
            try:
                address = ipaddress.ip_address(client)
            except ValueError:
                address = None
            if address is not None and any(address in net for net in self.clients):
                return "client"
        if any(pattern.search(user_agent) for pattern in self.user_agents):
            return "user_agent"
        if any(pattern.search(path) for pattern in self.paths):
            return "path"
        return None


class RuleSet:
    """The rules in force: the settings' plus the file's, reloaded when it changes."""

    def __init__(self, configured: DenyRules, path: Path | None) -> None:
        self.configured = configured
        self.path = path
        self._modified: float | None = None
        self._reported: object = None
        self._checked_at = 0.0
        self.rules = CompiledRules.of(configured)
        if path is not None:
            self.reload()

    def current(self) -> CompiledRules:
        if self.path is not None and time.monotonic() - self._checked_at >= RELOAD_CHECK_SECONDS:
            self.reload()
        return self.rules

    def reload(self) -> None:
        if self.path is None:
            return
        self._checked_at = time.monotonic()
        try:
            modified = self.path.stat().st_mtime
        except OSError as exc:
            self._report("deny rules file unreadable; keeping the last rules", "missing", exc)
            self._modified = None
            return
        if modified == self._modified:
            return
        try:
            loaded = DenyRules.model_validate(json.loads(self.path.read_text()))
            rules = CompiledRules.of(self.configured, loaded)
        except (OSError, ValueError, ValidationError, re.error) as exc:
            self._report("deny rules file invalid; keeping the last rules", modified, exc)
            return
        self._reported = None
        self._modified = modified
        self.rules = rules
        logger.info(
            "deny rules loaded",  # once per change of the file
            path=str(self.path),
            clients=len(rules.clients),
            user_agents=len(loaded.user_agents),
            paths=len(loaded.paths),
        )

    def _report(self, event: str, state: object, error: Exception) -> None:
        """Logs ``event`` once for each state of the file, not at every check."""
        if state != self._reported:
            self._reported = state
            logger.error(event, path=str(self.path), error=str(error))
