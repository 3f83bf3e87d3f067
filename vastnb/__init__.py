"""vastnb: train on rented Vast.ai GPUs from a notebook."""

from __future__ import annotations

__version__ = "0.1.0"
