"""Errors the user sees as one line: they name the file or the option and the problem."""


class IqaError(Exception):
    """A problem with the user's input or environment, shown without a traceback."""


class NotAvailable(IqaError):
    """A method or dataset cannot run here (missing weights, package or files)."""
