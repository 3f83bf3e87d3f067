"""Real Vast: its REST API over HTTPS, boxes over OpenSSH, self-destruct through the API."""

from __future__ import annotations

from vastnb.backends.base import SelfDestruct, SSHBackend

__all__ = ["VastBackend"]


class VastBackend(SSHBackend):
    """The Vast.ai marketplace (or anything that serves its API at ``api.base_url``, a
    served simulator included)."""

    name = "vast"

    def self_destruct(self) -> SelfDestruct:
        return SelfDestruct(self.api.base_url)
