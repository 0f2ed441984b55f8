"""Errors that describe a user's mistake rather than a bug in this tool."""


class UserInputError(ValueError):
    """Bad input a user can fix: the message names the path, the problem and the fix.

    The CLI prints these as one paragraph without a traceback (unless --verbose),
    and executors let them propagate so TFX records the execution as failed and
    publishes no output artifact.
    """
