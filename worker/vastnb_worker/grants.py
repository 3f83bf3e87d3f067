"""Storage credentials on the box: the notebook grants them, this module installs them.

The notebook calls :func:`install` on the box as a control call (``Session.control``:
on a thread of its own, beside any running cell; never through an onstart script or
the instance's environment, which Vast's API shows). It uses no signals. The variables go
into this process's ``os.environ``, where every boto3 client made afterwards finds them;
with ``AWS_CREDENTIAL_EXPIRATION`` set, botocore also re-reads them before they expire,
so a client made earlier picks up a renewal. Standard library only.
"""

from __future__ import annotations

import os
from typing import Any, Optional

__all__ = ["NAMES", "install", "installed"]

#: The variables a grant may set. Anything else is refused: a grant must not be a way
#: to change, say, ``PATH`` or ``LD_PRELOAD`` on the box.
NAMES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_ENDPOINT_URL_S3",
)
#: Cleared on every install unless given: a stale token (botocore reads
#: AWS_SECURITY_TOKEN first) must not pair with the new keys.
_STALE = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CREDENTIAL_EXPIRATION")


def install(env: dict[str, str]) -> dict[str, Any]:
    """Set ``env`` (a grant's variables) in this process's environment. Returns the
    names set, the names cleared and the expiry; never a secret value."""
    unknown = sorted(name for name in env if name not in NAMES)
    if unknown:
        raise ValueError(f"not a storage credential variable: {', '.join(unknown)}; allowed: {', '.join(NAMES)}")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if not env.get(name):
            raise ValueError(f"{name} is missing or empty: a grant needs both keys")
    removed: list[str] = []
    for name in _STALE:
        if name not in env and os.environ.pop(name, None) is not None:
            removed.append(name)
    for name, value in env.items():
        os.environ[name] = str(value)
    return {"installed": sorted(env), "removed": removed, "expires": env.get("AWS_CREDENTIAL_EXPIRATION")}


def installed() -> dict[str, Optional[str]]:
    """What is set now, for a check from the notebook: the names present, the key id's
    last four characters, the expiry and the endpoint; never a secret value."""
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    return {
        "names": ",".join(name for name in NAMES if os.environ.get(name)),
        "key_id_end": key[-4:] if key else None,
        "expires": os.environ.get("AWS_CREDENTIAL_EXPIRATION"),
        "endpoint": os.environ.get("AWS_ENDPOINT_URL_S3"),
    }
