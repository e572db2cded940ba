"""The one exception type the command-line tools turn into a one-line error."""


class NSTError(Exception):
    """A problem with the user's input: a bad file, flag or configuration.

    The message must stand on its own as one line, naming the offending file or
    flag and the reason (``"style.jpg: not an image file"``). Command-line tools
    print it after the program name and exit with status 1; library callers can
    catch it like any other exception.
    """
