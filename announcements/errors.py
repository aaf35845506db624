"""Domain errors. The web layer turns each into one HTTP answer in ``app.errors``."""

from __future__ import annotations


class DomainError(Exception):
    """Base class for every error the domain raises on purpose."""

    message = "That could not be done."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message


class NotFound(DomainError):
    """The thing asked for does not exist, or is not visible to the caller."""

    message = "Not found."


class ValidationFailed(DomainError):
    """Input that breaks a rule; ``errors`` maps each field to what is wrong with it."""

    message = "Some fields need attention."

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {text}" for field, text in errors.items()))
        self.errors = errors


class InvalidTransition(DomainError):
    """A state change that the thing's current state does not allow."""


class Conflict(DomainError):
    """The change would clash with existing data."""


class Unauthenticated(DomainError):
    """The caller did not prove who they are, or the proof is wrong."""


class Forbidden(DomainError):
    """The caller is known but may not do this here."""


class Malformed(ValidationFailed):
    """A request that cannot be read at all, such as a body that is not JSON."""
