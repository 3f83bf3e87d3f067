"""The backend boundary: real Vast or the simulator, chosen once when a Client is built.

A :class:`~vastnb.backends.base.Backend` supplies the REST transport, how to reach a box
(SSH, or a local process for a simulated one) and how a box destroys itself. Nothing
above this package asks which backend it has."""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from vastnb.backends.base import Backend, BoxOptions
    from vastnb.base.secret import Secret
    from vastnb.market.retry import RetryPolicy
    from vastnb.sim import SimConfig

__all__ = ["NAMES", "SIM_URL", "open_backend"]

NAMES = ("vast", "sim")
SIM_URL = "http://sim.vastnb.invalid"  # never resolved: the in-process transport answers


def open_backend(
    name: str,
    *,
    key: Secret | None,
    home: Path,
    url: str | None = None,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    box: BoxOptions | None = None,
    sim_config: SimConfig | None = None,
) -> Backend:
    """The backend called ``name`` ("vast" needs ``key``; "sim" makes its simulator under
    ``home``). ``url`` and ``transport`` replace Vast's address and network (a served
    simulator, or tests)."""
    from vastnb.base.secret import Secret
    from vastnb.errors import ConfigError
    from vastnb.market.api import VastAPI

    if name == "sim":
        from vastnb.backends.sim import SimBackend
        from vastnb.sim import Simulator

        simulator = Simulator(home, sim_config)
        api = VastAPI(Secret(simulator.market.api_key), base_url=SIM_URL, transport=simulator.transport(), retry=retry)
        return SimBackend(simulator, api, home, box)
    if name != "vast":
        raise ConfigError(f"backend must be one of {', '.join(NAMES)}, not {name!r} (check VASTNB_BACKEND).")
    if key is None:
        raise ConfigError(
            "The vast backend needs an API key: pass api_key=..., set VAST_API_KEY, or run "
            "`vastai set api-key`. Without one, use backend='sim' to try everything on the simulator."
        )
    from vastnb.backends.vast import VastBackend

    return VastBackend(VastAPI(key, base_url=url, transport=transport, retry=retry), home, box)
