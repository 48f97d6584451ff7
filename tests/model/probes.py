"""The data period the model is trained on, and perturbations of raw request rows."""

from __future__ import annotations

import pandas as pd

from app.data.synthetic import Defects

CLEAN = Defects(0, 0, 0, 0, 0, 0)
# A fixed start, so the data, and the months the model saw (January and February 2024), do not
# depend on today's date. Both weeks below lie inside that period.
START = "2024-01-01"
JANUARY_WEEK, FEBRUARY_WEEK = "2024-01-15", "2024-02-12"  # Mondays
SATURDAY, WEDNESDAY = 5, 2


def event_times(rows: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(rows["event_timestamp"])


def with_times(rows: pd.DataFrame, times: pd.Series) -> pd.DataFrame:
    """The rows with their event timestamps replaced (ISO strings, as the generator writes them)."""
    return rows.assign(event_timestamp=pd.to_datetime(times).dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy())


def in_week(rows: pd.DataFrame, monday: str, weekday: int | None = None) -> pd.DataFrame:
    """Each row moved into the week starting `monday`, on its own weekday (or `weekday`), at its
    own time of day: only the calendar date changes."""
    t = event_times(rows)
    day = t.dt.dayofweek if weekday is None else pd.Series(weekday, index=rows.index)
    return with_times(rows, pd.Timestamp(monday) + pd.to_timedelta(day, unit="D") + (t - t.dt.floor("D")))


def at_hour(rows: pd.DataFrame, hour: int) -> pd.DataFrame:
    """Each row on its own day and minute, at `hour`."""
    t = event_times(rows)
    return with_times(rows, t.dt.floor("D") + pd.Timedelta(hours=hour) + (t - t.dt.floor("h")))
