"""GPU model names as Vast spells them, and the families a profile may name instead.

Vast's ``gpu_name`` uses spaces (``RTX 4090``); the official CLI writes underscores
(``RTX_4090``). Both are accepted everywhere, as is any letter case.
"""

from __future__ import annotations

import difflib

__all__ = ["GPU_NAMES", "GPU_FAMILIES", "normalize_gpu_name", "resolve_gpu", "suggest_gpu"]

#: Model names seen on the Vast marketplace (``gpu_name`` values).
GPU_NAMES: tuple[str, ...] = (
    "GTX 1080 Ti",
    "RTX 3060",
    "RTX 3070",
    "RTX 3080",
    "RTX 3090",
    "RTX 4060 Ti",
    "RTX 4070",
    "RTX 4080",
    "RTX 4090",
    "RTX 5090",
    "RTX A4000",
    "RTX A5000",
    "RTX A6000",
    "RTX 6000Ada",
    "RTX PRO 6000 S",
    "RTX PRO 6000 WS",
    "Q RTX 8000",
    "Tesla T4",
    "Tesla V100",
    "A10",
    "A40",
    "L4",
    "L40",
    "L40S",
    "A100 PCIE",
    "A100 SXM4",
    "A100X",
    "H100 PCIE",
    "H100 SXM",
    "H100 NVL",
    "H200",
    "H200 NVL",
    "B200",
)

#: A family name matches every listed model, so ``A100`` means any A100 variant.
GPU_FAMILIES: dict[str, tuple[str, ...]] = {
    "A100": ("A100 PCIE", "A100 SXM4", "A100X"),
    "H100": ("H100 PCIE", "H100 SXM", "H100 NVL"),
    "RTX PRO 6000": ("RTX PRO 6000 S", "RTX PRO 6000 WS"),
}

_BY_KEY = {name.casefold(): name for name in GPU_NAMES}
_FAMILY_BY_KEY = {name.casefold(): name for name in GPU_FAMILIES}


def normalize_gpu_name(name: str) -> str:
    """Spell a GPU name the way Vast does: underscores to spaces, single spaces."""
    return " ".join(name.replace("_", " ").split())


def resolve_gpu(name: str) -> tuple[str, ...] | None:
    """The Vast model names that ``name`` stands for, or None if it names no known GPU.

    An exact model name wins over a family (``H200`` is the model, not ``H200 NVL`` too).
    """
    key = normalize_gpu_name(name).casefold()
    if key in _BY_KEY:
        return (_BY_KEY[key],)
    if key in _FAMILY_BY_KEY:
        return GPU_FAMILIES[_FAMILY_BY_KEY[key]]
    return None


def suggest_gpu(name: str) -> str | None:
    """The known name or family closest to ``name``, for a did-you-mean hint."""
    key = normalize_gpu_name(name).casefold()
    candidates = {**_BY_KEY, **_FAMILY_BY_KEY}
    # Compare without spaces too, so "rtx4090" finds "RTX 4090".
    squashed = {k.replace(" ", ""): v for k, v in candidates.items()}
    if key.replace(" ", "") in squashed:
        return squashed[key.replace(" ", "")]
    match = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return candidates[match[0]] if match else None
