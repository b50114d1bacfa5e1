"""Errors a user can fix: the CLI prints their message on one line and exits non-zero."""


class AttnreproError(Exception):
    """Base of every error whose message tells the user what to do."""
