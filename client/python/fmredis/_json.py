"""Request bodies as compact JSON, decimal.Decimal included.

json.dumps cannot write a Decimal as a number (its hook may only return
another object to encode), yet a Decimal is how a caller keeps a number's
digits (Client(parse_float=decimal.Decimal)). So a value json.dumps refuses
is written by the small encoder below, which writes a Decimal's own digits
and everything else as json.dumps does; values without a Decimal keep the
fast C encoder.

Text is written as UTF-8, not as \\uXXXX escapes, and encoded strictly: a lone
surrogate (which UTF-8 cannot hold) raises UnicodeEncodeError here, while
as an escape the daemon would answer bad_json without the request's id."""

from __future__ import annotations

import decimal
import json
import math
from typing import Any

__all__ = ["dumps"]


def dumps(obj: Any) -> bytes:
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except TypeError:
        parts: list[str] = []
        _encode(obj, parts)
        text = "".join(parts)
    return text.encode("utf-8", "strict")


def _number(x: float | decimal.Decimal) -> str:
    if isinstance(x, decimal.Decimal):
        if not x.is_finite():
            raise ValueError("%s is not a JSON number" % x)
        return str(x)
    if not math.isfinite(x):
        raise ValueError("%r is not a JSON number" % x)
    return float.__repr__(x)


def _str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _key(k: Any) -> str:
    if isinstance(k, str):
        return _str(k)
    if k is True or k is False or k is None:
        return json.dumps(json.dumps(k))
    if isinstance(k, int):
        return '"%d"' % k
    if isinstance(k, (float, decimal.Decimal)):
        return '"%s"' % _number(k)
    raise TypeError("keys must be str, int, float, Decimal, bool or None, not %s"
                    % type(k).__name__)


def _encode(obj: Any, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(_str(obj))
    elif obj is None or obj is True or obj is False:
        out.append(json.dumps(obj))
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, (float, decimal.Decimal)):
        out.append(_number(obj))
    elif isinstance(obj, dict):
        out.append("{")
        for i, (k, v) in enumerate(obj.items()):
            if i:
                out.append(",")
            out.append(_key(k))
            out.append(":")
            _encode(v, out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    else:
        raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)
