"""Typed records for what the Vast API returns: offers, instances, keys, the user, charges.

Each is a frozen dataclass built by ``from_api()`` from the API's JSON, tolerant of the
quirks documented for the real API (string HostPorts, whitespace in addresses,
``extra_env`` as pairs, null status fields). ``raw`` keeps the full record.
"""

from __future__ import annotations

import enum
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ActualStatus",
    "Offer",
    "Instance",
    "SSHKey",
    "User",
    "Charge",
    "CreatedInstance",
    "Overlay",
    "country_of",
]


class ActualStatus(str, enum.Enum):
    """Vast's ``actual_status``: what the container is doing now."""

    PROVISIONING = "provisioning"  # the API sends null
    CREATED = "created"
    LOADING = "loading"
    RUNNING = "running"
    STOPPED = "stopped"
    FROZEN = "frozen"
    EXITED = "exited"
    REBOOTING = "rebooting"
    RECYCLING = "recycling"
    UNKNOWN = "unknown"
    OFFLINE = "offline"
    DESTROYED = "destroyed"

    @classmethod
    def parse(cls, value: object) -> ActualStatus:
        """Map the API's value; null is provisioning, and an unheard-of value is UNKNOWN
        (never RUNNING: a state we do not understand must not be taken as ready)."""
        if value is None:
            return cls.PROVISIONING
        try:
            return cls(str(value).lower())
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_failed(self) -> bool:
        """States that never become ``running`` on their own."""
        return self in (ActualStatus.EXITED, ActualStatus.UNKNOWN, ActualStatus.OFFLINE, ActualStatus.DESTROYED)


def country_of(geolocation: str | None) -> str | None:
    """The two-letter country code that ends Vast's free-text ``geolocation``."""
    if not geolocation:
        return None
    code = geolocation.rsplit(",", 1)[-1].strip()
    return code.upper() if len(code) == 2 and code.isalpha() else None


def _float(value: Any, default: float = 0.0) -> float:
    if type(value) is float:  # the common case, first: parsing 10,000 offers adds up
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _int(value: Any, default: int = 0) -> int:
    if type(value) is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _str(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


@dataclass(frozen=True)
class Offer:
    """One rentable offer from ``POST /bundles/``; prices are $/hour for the whole offer."""

    id: int
    machine_id: int
    gpu_name: str
    num_gpus: int
    gpu_ram_mb: int
    dph_total: float
    dph_base: float
    min_bid: float
    storage_cost: float
    reliability: float
    dlperf: float
    dlperf_per_dphtotal: float
    cuda_max_good: float
    geolocation: str | None
    country: str | None
    verified: bool
    direct_port_count: int
    disk_space: float
    inet_down: float
    is_bid: bool
    cluster_id: int | None  # the physical cluster it is in (an overlay network joins only one)
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Offer:
        geolocation = _str(data.get("geolocation"))
        reliability = data.get("reliability", data.get("reliability2"))
        verification = data.get("verification")
        verified = bool(data.get("verified", verification == "verified"))
        return cls(
            id=_int(data.get("id")),
            machine_id=_int(data.get("machine_id")),
            gpu_name=str(data.get("gpu_name") or ""),
            num_gpus=_int(data.get("num_gpus")),
            gpu_ram_mb=_int(data.get("gpu_ram")),
            dph_total=_float(data.get("dph_total")),
            dph_base=_float(data.get("dph_base")),
            min_bid=_float(data.get("min_bid")),
            storage_cost=_float(data.get("storage_cost")),
            reliability=_float(reliability),
            dlperf=_float(data.get("dlperf")),
            dlperf_per_dphtotal=_float(data.get("dlperf_per_dphtotal")),
            cuda_max_good=_float(data.get("cuda_max_good")),
            geolocation=geolocation,
            country=country_of(geolocation),
            verified=verified,
            direct_port_count=_int(data.get("direct_port_count")),
            disk_space=_float(data.get("disk_space")),
            inet_down=_float(data.get("inet_down")),
            is_bid=bool(data.get("is_bid", False)),
            cluster_id=_int(data.get("cluster_id"), 0) or None,
            # A read-only view, not a copy: parsing 10,000 offers must stay cheap.
            raw=types.MappingProxyType(data) if isinstance(data, dict) else dict(data),
        )

    def price(self, *, disk_gb: float, bid: float | None = None) -> float:
        """$/hour for this offer with ``disk_gb`` of disk, on demand or at a ``bid``."""
        return (self.dph_base if bid is None else bid) + disk_gb * self.storage_cost / 720


@dataclass(frozen=True)
class Instance:
    """One rented instance, as ``GET /instances/{id}/`` or the v1 list returns it."""

    id: int
    label: str | None
    actual_status: ActualStatus
    intended_status: str | None
    cur_state: str | None
    next_state: str | None
    status_msg: str | None
    gpu_name: str
    num_gpus: int
    machine_id: int
    dph_total: float
    is_bid: bool
    ssh_host: str | None
    ssh_port: int | None
    public_ipaddr: str | None
    ports: Mapping[str, int]
    extra_env: Mapping[str, str]
    start_date: float | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Instance:
        ports: dict[str, int] = {}
        for name, bindings in (data.get("ports") or {}).items():
            # HostPort is a string in the real API.
            if isinstance(bindings, list) and bindings and isinstance(bindings[0], Mapping):
                ports[name] = _int(bindings[0].get("HostPort"))
        extra_env = {str(pair[0]): str(pair[1]) for pair in data.get("extra_env") or [] if len(pair) == 2}
        ssh_port = data.get("ssh_port")
        start = data.get("start_date")
        return cls(
            id=_int(data.get("id")),
            label=data.get("label"),
            actual_status=ActualStatus.parse(data.get("actual_status")),
            intended_status=data.get("intended_status"),
            cur_state=data.get("cur_state"),
            next_state=data.get("next_state"),
            status_msg=data.get("status_msg"),
            gpu_name=str(data.get("gpu_name") or ""),
            num_gpus=_int(data.get("num_gpus")),
            machine_id=_int(data.get("machine_id")),
            dph_total=_float(data.get("dph_total")),
            is_bid=bool(data.get("is_bid", False)),
            ssh_host=_str(data.get("ssh_host")),
            ssh_port=_int(ssh_port) if ssh_port is not None else None,
            public_ipaddr=_str(data.get("public_ipaddr")),
            ports=ports,
            extra_env=extra_env,
            start_date=_float(start) if start is not None else None,
            raw=dict(data),
        )

    @property
    def preempted(self) -> bool:
        """Stopped by Vast, not by us: an outbid interruptible instance (dstack's test).

        Only bids can be outbid: an on-demand instance stopped in all three fields was
        stopped by its owner (or for an empty balance), not preempted.
        """
        return self.is_bid and self.cur_state == self.intended_status == self.next_state == "stopped"

    def ssh_address(self) -> tuple[str, int] | None:
        """(host, port) for ``ssh root@host -p port``, as the official CLI picks it:
        the direct port mapping when there is one, else the proxy."""
        if "22/tcp" in self.ports and self.public_ipaddr:
            return self.public_ipaddr, self.ports["22/tcp"]
        if self.ssh_host and self.ssh_port:
            runtype = str(self.raw.get("image_runtype") or "")
            return self.ssh_host, self.ssh_port + (1 if "jupyter" in runtype else 0)
        return None


@dataclass(frozen=True)
class CreatedInstance:
    """The answer to a create call: the new instance id and its restricted key."""

    id: int
    instance_api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SSHKey:
    """An SSH public key registered on the account or on an instance."""

    id: int
    key: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> SSHKey:
        return cls(
            id=_int(data.get("id")), key=str(data.get("key") or data.get("public_key") or data.get("ssh_key") or "")
        )


@dataclass(frozen=True)
class User:
    """The account behind the API key. The API also returns the key itself; it is dropped."""

    id: int
    email: str | None
    balance: float
    credit: float
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> User:
        clean = {k: v for k, v in data.items() if k != "api_key"}
        return cls(
            id=_int(clean.get("id")),
            email=clean.get("email"),
            balance=_float(clean.get("balance")),
            credit=_float(clean.get("credit")),
            raw=clean,
        )


@dataclass(frozen=True)
class Charge:
    """One charge line from ``GET /charges/``: what an instance cost over a period."""

    source: str
    instance_id: int | None
    description: str
    amount: float
    start: float
    end: float
    items: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Charge:
        source = str(data.get("source") or "")
        instance_id = _int(source.rsplit("-", 1)[-1], 0) if source.startswith("instance-") else None
        items = data.get("items") or []
        if isinstance(items, str):
            items = json.loads(items)
        return cls(
            source=source,
            instance_id=instance_id or None,
            description=str(data.get("description") or ""),
            amount=_float(data.get("amount")),
            start=_float(data.get("start")),
            end=_float(data.get("end")),
            items=tuple(items),
        )


@dataclass(frozen=True)
class Overlay:
    """An overlay network from ``GET /overlay/``: a private LAN on one physical cluster,
    joining the instances created on it (``env {"-n": name}``) on every port."""

    overlay_id: int
    name: str
    cluster_id: int | None
    internal_subnet: str | None  # e.g. "10.0.0.0/24"; None until the market assigns one
    instances: tuple[int, ...]

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Overlay:
        instances = data.get("instances") or []
        return cls(
            overlay_id=_int(data.get("overlay_id", data.get("id"))),
            name=str(data.get("name") or ""),
            cluster_id=_int(data.get("cluster_id"), 0) or None,
            internal_subnet=_str(data.get("internal_subnet")),
            instances=tuple(_int(i) for i in instances if isinstance(i, (int, str))),
        )
