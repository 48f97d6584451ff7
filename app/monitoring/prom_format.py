"""Prometheus's template functions (`humanize`, `humanizeDuration`, `humanizePercentage`, in
its template/template.go), in Python: the alert rules' promtool test (alerts.py) states the
annotations Prometheus will render, so it formats values exactly as they do."""

from __future__ import annotations


def humanize(v: float) -> str:
    if v == 0:
        return f"{v:.4g}"
    if abs(v) >= 1:
        prefix = ""
        for p in "kMGTPEZY":
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
        return f"{v:.4g}{prefix}"
    return _small(v)


def humanize_duration(v: float) -> str:
    if v == 0:
        return f"{v:.4g}s"
    if abs(v) >= 1:
        sign, v = ("-", -v) if v < 0 else ("", v)
        whole = int(v)
        days, hours, minutes, seconds = whole // 86400, whole // 3600 % 24, whole // 60 % 60, whole % 60
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{v:.4g}s"
    return _small(v) + "s"


def humanize_percentage(v: float) -> str:
    return f"{v * 100:.4g}%"


def _small(v: float) -> str:
    """|v| < 1 with an SI prefix: 0.496 -> 496m."""
    prefix = ""
    for p in "munpfazy":
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{v:.4g}{prefix}"
