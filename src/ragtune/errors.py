"""The one exception type for user mistakes: the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input the user can fix; the message names the file or field and the fix."""
