"""Errors that describe a user's mistake rather than a bug in this tool."""


class UserInputError(ValueError):
    """Bad input a user can fix: the message names the path, the problem and the fix.

    The CLI prints these as one paragraph without a traceback (unless --verbose),
    and executors let them propagate so TFX records the execution as failed and
    publishes no output artifact.
    """


def find_user_error(error: BaseException) -> UserInputError | None:
    """The UserInputError behind an exception, even when Beam re-raised it wrapped.

    Beam's runners sometimes re-raise with only the text of the original error, and
    TFX's launcher reports an executor's recorded message as text; both keep the
    "UserInputError: " marker this looks for.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UserInputError):
            return current
        current = current.__cause__ or current.__context__
    marker = "UserInputError: "
    text = str(error)
    if marker in text:
        return UserInputError(text.split(marker, 1)[1].split(" [while running")[0].strip())
    return None
