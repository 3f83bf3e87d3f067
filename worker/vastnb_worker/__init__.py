"""vastnb's worker tier: the code that runs on the rented GPU box.

It imports only the standard library and cloudpickle at import time, and never vastnb.
"""

__version__ = "0.1.0"
