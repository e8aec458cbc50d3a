"""Strict JSON: the one way textune writes a JSON file or prints a JSON document.

Python's ``json`` writes NaN and Infinity by default. They are not JSON: strict parsers (``JSON.parse``, jq,
Go, Rust) refuse the whole document. :func:`dumps` writes every non-finite float as a value JSON has:

- NaN (a value that does not exist, such as a metric never reported) as ``null``;
- +inf and -inf (a diverged metric) as the strings ``"inf"`` and ``"-inf"`` (docs/tuning.md names them).
"""

from __future__ import annotations

import json
import math
from typing import Any

INFINITY_TEXT = {math.inf: "inf", -math.inf: "-inf"}


def finite(value: Any) -> Any:
    """``value`` with every non-finite float inside dicts, lists and tuples replaced as the module says."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else INFINITY_TEXT[value]
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(document: Any, **options: Any) -> str:
    """``document`` as strict JSON text; ``options`` are ``json.dumps``'s (indent, sort_keys, ensure_ascii).

    Raises TypeError for a value JSON cannot hold (convert NumPy scalars with ``.item()`` first).
    """
    return json.dumps(finite(document), allow_nan=False, **options)
