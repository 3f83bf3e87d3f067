"""vastnb's worker tier: the code that runs on the rented GPU box.

It imports only the standard library and cloudpickle at import time, and never vastnb.
"""

from vastnb_worker.metrics import report

__all__ = ["report"]

__version__ = "0.1.0"
