"""The error tree. Every error vastnb raises is a :class:`VastError`.

Each message says what happened and what to do about it. Messages are built from
values vastnb controls or has redacted: they never carry the API key.
"""

from __future__ import annotations

__all__ = [
    "VastError",
    "ConfigError",
    "ProfileError",
    "APIError",
    "AuthError",
    "NotFoundError",
    "OfferUnavailableError",
    "RateLimitError",
    "APIConnectionError",
    "InstanceCreateError",
    "NoOffersError",
]


class VastError(Exception):
    """Root of every error vastnb raises."""


class ConfigError(VastError):
    """Bad configuration: an argument, an environment variable or a config file."""


class ProfileError(ConfigError):
    """A GPU profile or budget file, or a profile name, that cannot be used.

    ``path``, ``line`` (1-based) and ``key`` locate the problem when it is in a file.
    """

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, key: str | None = None
    ) -> None:
        where = ""
        if path is not None:
            where = f"{path}, line {line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.key = key


class APIError(VastError):
    """The Vast API refused a request or could not be reached.

    ``status`` is the HTTP status (None when no response came back) and ``code`` the
    API's error code (``no_such_ask``, ``invalid_args``...) when it sent one.
    """

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, endpoint: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.endpoint = endpoint


class AuthError(APIError):
    """The API key is missing, wrong, or lacks the permission for this call."""


class NotFoundError(APIError):
    """The instance, offer or key named in the request does not exist (any more)."""


class OfferUnavailableError(NotFoundError):
    """The offer was rented by someone else between search and create: try the next one."""


class RateLimitError(APIError):
    """Vast kept answering 429 (too many requests) until the retry budget ran out."""


class APIConnectionError(APIError):
    """No answer from the API: connection refused, reset, or timed out, after retries."""


class InstanceCreateError(APIError):
    """A create call failed. If Vast created an instance anyway (it does for a bid below
    the minimum), ``created_instance_id`` holds its id, and it must be destroyed."""

    def __init__(
        self,
        message: str,
        *,
        created_instance_id: int | None = None,
        status: int | None = None,
        code: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, endpoint=endpoint)
        self.created_instance_id = created_instance_id


class NoOffersError(VastError):
    """No offer on the market satisfies the profile.

    ``report`` explains which constraint removed how many offers and names the cheapest
    near-miss, so the user can decide what to relax.
    """

    def __init__(self, message: str, *, report: object = None) -> None:
        super().__init__(message)
        self.report = report
