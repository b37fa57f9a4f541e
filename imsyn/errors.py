"""User-facing error types.

Every error a user can cause (bad file, bad shape, bad config value) is raised as
a subclass of :class:`ImsynError`. CLIs catch it, print one line and exit with
status 2. They subclass ``ValueError`` so library callers can catch either.
"""


class ImsynError(ValueError):
    """Base class of all user-facing imsyn errors."""


class InputError(ImsynError):
    """A file or array given by the user is missing, unreadable or malformed."""


class ConfigError(ImsynError):
    """A configuration field is unknown or has an invalid value."""


class OutputError(ImsynError):
    """An output location cannot be written."""
