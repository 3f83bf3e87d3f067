"""The artifact-storage tier, seen from the notebook: a run's checkpoints as DataFrames
(:mod:`~vastnb.storage.checkpoints`) and short-lived storage grants for boxes
(:mod:`~vastnb.storage.grants`). The stores themselves are the worker's
(``vastnb_worker.checkpoint``), so the box and the notebook share one implementation."""
