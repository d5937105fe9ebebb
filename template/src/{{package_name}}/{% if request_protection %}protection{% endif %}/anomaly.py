"""Detect-only anomaly scoring of the request line and User-Agent, in the manner of the
OWASP Core Rule Set: each matching rule adds to a score; the score is logged and counted,
and refuses the request only when ``block_anomaly_score`` is set.

Why not block: the service binds every SQL parameter and renders no HTML, so these
patterns cannot hurt it, while legitimate text (a product called "Drop Table", a search
for "<script>") matches them. The score is a signal for the dashboard and the edge's WAF,
whose rules see every service (docs/protection.md).
"""

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from starlette.types import Scope


@dataclass(frozen=True)
class Rule:
    name: str
    score: int
    pattern: re.Pattern[str]


RULES = (
    Rule(
        "sql_injection",
        5,
        re.compile(
            r"(?:\bunion\b[\s(]+(?:all\s+)?select\b|\bor\b\s+['\"]?\d+['\"]?\s*=\s*['\"]?\d"
            r"|;\s*(?:drop|delete|insert|update)\s|\bsleep\s*\(\s*\d|--\s*$)",
            re.IGNORECASE,
        ),
    ),
    Rule(
        "script_injection",
        5,
        re.compile(r"<\s*script\b|javascript:|\bon(?:error|load)\s*=", re.IGNORECASE),
    ),
    Rule("path_traversal", 5, re.compile(r"(?:\.\./|\.\.\\|/etc/passwd|\bwin\.ini\b)")),
    Rule("command_injection", 5, re.compile(r"(?:;|\||`|\$\()\s*(?:cat|curl|wget|sh|bash)\b")),
    Rule(
        "scanner_user_agent",
        3,
        re.compile(r"sqlmap|nikto|nmap|masscan|zgrab|nuclei|dirbuster|gobuster", re.IGNORECASE),
    ),
)


def matched_rules(scope: Scope, user_agent: str) -> list[Rule]:
    """The rules the request line (decoded) or the User-Agent match."""
    query = scope["query_string"]
    target = scope["path"]
    if query:
        target += "?" + unquote_plus(query.decode("latin-1"))
    return [
        rule
        for rule in RULES
        if rule.pattern.search(user_agent if rule.name == "scanner_user_agent" else target)
    ]
