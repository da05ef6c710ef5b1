"""Errors a user can fix: each message names the file and what to do."""


class InputError(ValueError):
    """Bad input (a corrupt file, an invalid pattern, an empty class...)."""
