"""The one exception type for mistakes a user can fix: bad data, a bad option, a missing run.

Front doors show a `UserError` as its one-line message (it names the file or option and the fix)
and anything else with its traceback: an internal bug must never pass for a user's mistake. It
is a `ValueError`, so code that validates values keeps its natural `except ValueError`.
"""


class UserError(ValueError):
    """Bad input that the user can correct. The message names the file or option and the fix."""
