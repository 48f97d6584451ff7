"""What Ray and its libraries print on our terminal: only warnings, unless `--verbose`."""

from __future__ import annotations

import logging


def verbose_console() -> bool:
    """Whether the user asked for libraries' INFO lines (`--verbose` sets the root logger to INFO)."""
    return logging.getLogger().getEffectiveLevel() <= logging.INFO


def quiet_ray_console() -> None:
    """Unless `--verbose`, workers' output (`log_to_driver`: trial workers' tracebacks as Tune ends
    them, Serve's and the Jobs API's INFO lines) and Ray's token-auth notice stay in Ray's logs."""
    if not verbose_console():
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)


def quiet_ray_data_console() -> None:
    """Ray Data prints each dataset's plan and, when stdout is not a terminal (a log, `ray job
    submit`), its progress every 10 s at INFO on the console. Unless INFO is asked for
    (`--verbose`), only its warnings reach the console; the full log stays in the Ray
    session's `ray-data` log file."""
    if verbose_console():
        return
    import ray.data  # noqa: F401  (configures the "ray.data" loggers on import)

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):  # the console (the file handler is not one)
            handler.setLevel(logging.WARNING)
            handler.addFilter(not_progress_bar_notice)


def not_progress_bar_notice(record: logging.LogRecord) -> bool:
    """Ray Data's warning that progress bars are off: `read_parquet` turns them off on purpose."""
    return not record.getMessage().startswith("Progress bars disabled")
