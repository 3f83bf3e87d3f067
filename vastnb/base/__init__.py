"""The shared contract: what both the orchestrator and the simulator may import.

Paths and the API key (:mod:`~vastnb.base.config`), secrets kept out of reprs
(:mod:`~vastnb.base.secret`), private folders (:mod:`~vastnb.base.private`), process
identity (:mod:`~vastnb.base.procs`) and Vast's GPU names (:mod:`~vastnb.base.gpus`).
Nothing here imports anything of vastnb but :mod:`vastnb.errors`.
"""
