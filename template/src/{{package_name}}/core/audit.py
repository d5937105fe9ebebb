"""Who an audit log names for a change made from the command line."""

import getpass


def command_line_actor() -> str:
    """``cli:<os user>``: the admin commands' changes, told apart from the API's."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a login name
        user = "unknown"
    return f"cli:{user}"
