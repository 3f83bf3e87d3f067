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
    "TransportError",
    "HandshakeError",
    "HostKeyError",
    "ConnectionLostError",
    "RemoteError",
    "UnsafeResultError",
    "CheckpointError",
    "CheckpointCorruptError",
    "StorageError",
    "ProvisionError",
    "InstanceGoneError",
    "TeardownError",
    "LifecycleError",
    "JobError",
    "BudgetWarning",
    "JobWarning",
    "BudgetError",
]


# The root and the checkpoint errors are defined in the worker package, which code on the
# box imports without vastnb: the same classes are raised there and caught here.
from vastnb_worker.errors import CheckpointCorruptError, CheckpointError, StorageError, VastError


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


class TransportError(VastError):
    """The connection to a box could not be made or kept: SSH, the box's python3, the
    worker bootstrap."""

    #: Set when the box's side ended before the session started: what it wrote to stderr last.
    stderr: str


class HandshakeError(TransportError):
    """The notebook and the worker on the box cannot talk: different protocol, Python,
    cloudpickle or worker versions. The message names both sides and the fix."""

    #: Set when the worker refused the session: True if it steps aside (it was idle), so
    #: the next connection starts the notebook's own worker.
    restarting: bool


class HostKeyError(TransportError):
    """The box's SSH host key differs from the one recorded at first connection."""


class ConnectionLostError(TransportError):
    """The connection dropped mid-task. The task keeps running on the box; ``task`` is
    its id, to reattach to."""

    def __init__(self, message: str, *, task: int | None = None) -> None:
        super().__init__(message)
        self.task = task


class RemoteError(VastError):
    """Code run on the box raised. ``remote_type``, ``remote_message`` and
    ``remote_traceback`` describe it; ``exception`` is the original exception when it
    could be brought back."""

    def __init__(
        self,
        remote_type: str,
        remote_message: str,
        remote_traceback: str,
        *,
        exception: BaseException | None = None,
        task: int | None = None,
        job: str | None = None,
    ) -> None:
        super().__init__(f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.exception = exception
        self.task = task
        self.job = job  # "job exp1, attempt 2 on instance N" for a job's own exception

    def __str__(self) -> str:
        return f"{self.remote_type}: {self.remote_message}\n\nOn the box:\n{self.remote_traceback}"

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the box's traceback, not vastnb's internals."""
        where = self.job or (f"task {self.task} on the box" if self.task is not None else "a control call on the box")
        return [f"RemoteError ({where})", *self.remote_traceback.rstrip().splitlines()]


class UnsafeResultError(VastError):
    """The box sent back something the session's result policy refuses to unpickle
    (with ``results=safe``: anything but plain data, arrays and tensors)."""


class ProvisionError(VastError):
    """A launch gave up. ``attempts`` lists each try: the offer, the instance it created
    (if any), why it failed, and whether that instance was destroyed. A message that
    says an instance may still be billing names it and the command that ends it."""

    def __init__(
        self, message: str, *, attempts: list[dict[str, object]] | None = None, left_billing: list[int] | None = None
    ) -> None:
        super().__init__(message)
        self.attempts = attempts or []
        #: Instances this launch created that are still billing (they could not be destroyed).
        self.left_billing = left_billing or []


class InstanceGoneError(VastError):
    """The instance no longer exists on the market (destroyed, or never created), or no
    instance has that name in vastnb's state store."""


class TeardownError(VastError):
    """A teardown tried every instance and some could not be destroyed. ``destroyed``
    lists the ids it destroyed, ``failed`` maps each id it could not to why: those may
    still be billing, and the message names the command that retries them."""

    def __init__(self, destroyed: list[int], failed: dict[int, str]) -> None:
        lines = [
            f"destroyed {len(destroyed)} of {len(destroyed) + len(failed)} instance(s); "
            f"{len(failed)} could NOT be destroyed and may still be billing:"
        ]
        lines += [f"  #{instance_id}: {why}" for instance_id, why in failed.items()]
        lines.append(f"Retry with `vastnb down {' '.join(map(str, failed))}`, or destroy them at console.vast.ai.")
        super().__init__("\n".join(lines))
        self.destroyed = destroyed
        self.failed = failed


class LifecycleError(VastError):
    """A change of an instance's recorded state that its life does not allow (destroyed
    is final, for one): a bug in vastnb, or another process that changed the instance at
    the same moment. ``vastnb ps`` shows where it is now."""


class JobError(VastError):
    """A job did not give a result: it failed (its boxes were lost more often than
    ``max_recoveries`` allows, or no box could be rented), was cancelled, or ran out of
    budget. ``job`` is its name and ``state`` where it ended; ``job.events()`` tells why.
    A job whose own code raised raises that as a :class:`RemoteError` instead."""

    def __init__(self, message: str, *, job: str = "", state: str = "") -> None:
        super().__init__(message)
        self.job = job
        self.state = state


class BudgetWarning(UserWarning):
    """A budget reached one of its alert thresholds this month."""


class JobWarning(UserWarning):
    """Something about a submitted job its user should know (it has no checkpoint, so a
    recovery starts it from the beginning)."""


class BudgetError(VastError):
    """A launch or a job was refused, before anything was rented, because its worst case
    would break a budget of ``budgets.yaml``: ``scope`` (team or team/project), the
    ``limit`` it would break, what was ``spent`` of it this month, and the ``worst`` case."""

    def __init__(self, message: str, *, scope: str, limit: float, spent: float, worst: float) -> None:
        super().__init__(message)
        self.scope, self.limit, self.spent, self.worst = scope, limit, spent, worst
