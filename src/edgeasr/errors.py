"""The one exception type a user sees: a one-line message naming the file, line or key."""


class EdgeAsrError(Exception):
    """Bad input or an unsupported setting; the message is meant to be shown as is."""
