"""DriftTracker: the live traffic's drift, per variant, against the champion's reference profile.

Each variant's records fill tumbling windows of `window` records counted on the reference's
bins (drift.py). A full window is reported once, kept as that variant's answer until the next
one completes, and its headline numbers join the history (drift over time, bounded). A new
reference restarts every window: windows are counted on the reference's bins.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping

import pandas as pd

from app.config import AppConfig
from app.monitoring import bands
from app.monitoring.drift import DriftWindow
from app.monitoring.messages import COMPLETE, PARTIAL, HistoryPoint, WindowReport

HISTORY = 1_000  # completed windows remembered for drift over time


def settings(cfg: AppConfig) -> dict:
    """The tracker's settings from a config (`DriftTracker(**settings(cfg))`)."""
    calendar = frozenset() if cfg.monitor.alert_on_calendar else frozenset(cfg.features.time)
    return {
        "window": cfg.monitor.window,
        "psi_alert": cfg.monitor.psi_alert,
        "watch_only": calendar,
        "ignore": frozenset(cfg.monitor.ignore_features),
        "psi_band": cfg.monitor.psi_band,
    }


def alerting(windows: Mapping[str, WindowReport]) -> bool:
    """Whether a variant's complete window drifted (a partial one never alerts)."""
    return any(r.alert and r.window == COMPLETE for r in windows.values())


class DriftTracker:
    """`watch_only` features are reported but raise no alert; `ignore`d ones are not tracked.
    `psi_band`: "learned" judges each feature by its band from the reference's chunks where the
    reference has them (bands.py), "fixed" by `psi_alert`."""

    def __init__(
        self,
        *,
        window: int,
        psi_alert: float,
        watch_only: frozenset[str] = frozenset(),
        ignore: frozenset[str] = frozenset(),
        psi_band: str = bands.FIXED,
        history: int = HISTORY,
    ):
        self.reference_version: int | None = None
        self.profile: dict = {}
        self.configure(
            window=window, psi_alert=psi_alert, watch_only=watch_only, ignore=ignore, psi_band=psi_band
        )
        self.current: dict[str, DriftWindow] = {}  # variant -> the window being filled
        self.complete: dict[str, WindowReport] = {}  # variant -> the last full window's report
        self.history: deque[HistoryPoint] = deque(maxlen=history)

    def configure(
        self,
        *,
        window: int,
        psi_alert: float,
        watch_only: frozenset[str],
        ignore: frozenset[str],
        psi_band: str = bands.FIXED,
    ) -> None:
        """New settings; a new window size applies from the next window on."""
        self.window, self.psi_alert, self.psi_band = window, psi_alert, psi_band
        self.watch_only, self.ignore = frozenset(watch_only), frozenset(ignore)
        self._thresholds()

    def _thresholds(self) -> None:
        """Each feature's PSI threshold for this reference, window size and band mode."""
        self.thresholds, self.band = bands.psi_thresholds(
            self.profile, window=self.window, fixed=self.psi_alert, mode=self.psi_band
        )

    def follow(self, version: int, profile: dict) -> None:
        """A new reference (the champion's bundle profile, less the ignored features)."""
        self.profile = {
            **profile,
            "numeric": {k: v for k, v in profile.get("numeric", {}).items() if k not in self.ignore},
            "categorical": {k: v for k, v in profile.get("categorical", {}).items() if k not in self.ignore},
        }
        self.reference_version = version
        self.current, self.complete = {}, {}
        self._thresholds()

    def add(self, records: list[dict], *, remember: bool = True, now: float | None = None) -> None:
        """Window a batch of ok prediction rows (the traffic log's rows). `remember=False`
        replays records already in the history (a restart) without adding them to it again."""
        if not self.profile or not records:
            return
        frame = pd.DataFrame.from_records(records)
        for variant, part in frame.groupby("variant", sort=False):
            start = 0
            while start < len(part):
                window = self.current.setdefault(variant, DriftWindow(self.profile))
                take = part.iloc[start : start + self.window - window.n]
                window.add(take)
                start += len(take)
                if window.n >= self.window:  # tumbling: a full window is reported once
                    self._completed(variant, window, remember=remember, now=now)

    def _completed(self, variant: str, window: DriftWindow, *, remember: bool, now: float | None) -> None:
        report = self._report(window, COMPLETE)
        self.complete[variant] = report
        self.current[variant] = DriftWindow(self.profile)
        if remember:
            score = report.score.psi if report.score else None
            at = time.time() if now is None else now
            self.history.append(
                HistoryPoint(
                    at=at,
                    variant=variant,
                    n=report.n,
                    max_psi=report.max_psi,
                    score_psi=score,
                    drifted=report.drifted,
                )
            )

    def _report(self, window: DriftWindow, kind: str) -> WindowReport:
        stats = window.report(
            psi_alert=self.psi_alert, watch_only=self.watch_only, thresholds=self.thresholds
        )
        return WindowReport.model_validate({**stats, "window": kind})

    def windows(self) -> dict[str, WindowReport]:
        """Per variant: the last complete window's report, or the partial one before any."""
        return {
            variant: self.complete.get(variant) or self._report(self.current[variant], PARTIAL)
            for variant in sorted(set(self.current) | set(self.complete))
        }

    def restore_history(self, points: Iterable[dict | HistoryPoint]) -> None:
        """Add saved history points (a snapshot's), oldest first."""
        self.history.extend(HistoryPoint.model_validate(p) for p in points)

    def history_rows(self) -> list[dict]:
        """The history as plain rows, as the snapshot saves it."""
        return [p.model_dump() for p in self.history]
