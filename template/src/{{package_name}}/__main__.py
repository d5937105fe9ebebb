"""Allow ``python -m <package>`` as an alias of the service CLI."""

from .cli import app

app()
