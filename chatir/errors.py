"""Errors whose message is meant for a person: the CLI prints them without a traceback."""


class ChatIRError(Exception):
    """Base class: ``str(error)`` is a complete, actionable sentence."""


class ModelNotAvailableError(ChatIRError):
    """A model id or path could not be loaded (offline, typo, missing weights)."""


class IndexMismatchError(ChatIRError):
    """The collection was built with another model or vector size."""


class ServiceUnavailableError(ChatIRError):
    """The retriever service (or the vector store behind it) cannot be reached."""
