"""The one exception type the command-line tools turn into a one-line error, and a helper to quote
another exception in it."""


class NSTError(Exception):
    """A problem with the user's input: a bad file, flag or configuration.

    The message must stand on its own as one line, naming the offending file or
    flag and the reason (``"style.jpg: not an image file"``). Command-line tools
    print it after the program name and exit with status 1; library callers can
    catch it like any other exception.
    """


def first_line(exc, limit=200):
    """The first line of ``exc``'s message (at most ``limit`` characters), to quote as the
    reason in a one-line :class:`NSTError`; the exception's type name if it has no message."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
