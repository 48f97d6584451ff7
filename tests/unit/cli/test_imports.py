"""The command line answers at once: parsing, `--help` and a config error import no heavy library."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "ray", "feast", "mlflow", "pandas")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.strip().splitlines()[-1].split()[1:])


def test_importing_the_cli_pulls_in_no_heavy_library():
    assert _loaded_after("import app.cli") == set()


def test_help_and_a_config_error_pull_in_no_heavy_library():
    help_run = "import sys\nfrom app.cli import main\nsys.argv = ['mlsys', '--help']\ntry:\n    main()\nexcept SystemExit:\n    pass"
    assert _loaded_after(help_run) == set()
    bad_config = help_run.replace("'--help'", "'--config', '/no/such.yaml', 'models', 'list'")
    assert _loaded_after(bad_config) == set()


def test_library_deprecations_are_hidden_from_the_terminal_and_ours_are_not():
    import warnings

    from app.cli.base import quiet_library_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_library_warnings()
        warnings.warn_explicit("old api", DeprecationWarning, "ds.py", 1, module="ray.data.dataset")
        warnings.warn_explicit("changing default", FutureWarning, "frame.py", 1, module="pandas.core.frame")
        warnings.warn_explicit("ours", FutureWarning, "scoring.py", 1, module="app.serving.scoring")
        warnings.warn_explicit("not a deprecation", UserWarning, "feast.py", 1, module="feast.repo")
    assert [str(w.message) for w in seen] == ["ours", "not a deprecation"]


def _library_deprecation_shown_after(importing: str) -> bool:
    """Whether a library's DeprecationWarning reaches stderr in a fresh process where the CLI
    hid them, then `importing` ran (SQLAlchemy's, raised from MLflow's store, as in a pipeline)."""
    probe = (
        "import warnings\nfrom app.cli.base import quiet_library_warnings\nquiet_library_warnings()\n"
        f"{importing}\n"
        "warnings.warn_explicit('noload is deprecated', DeprecationWarning, 'sqlalchemy_store.py', 327,"
        " module='mlflow.store.tracking.sqlalchemy_store')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return "noload is deprecated" in out.stderr


def test_importing_feast_keeps_library_deprecations_hidden():
    assert not _library_deprecation_shown_after("from app.features.repo import import_feast\nimport_feast()")


def test_feast_still_changes_the_warning_filters_when_imported():
    """Canary: when a plain `import feast` leaves the filters alone, `import_feast` can go."""
    assert _library_deprecation_shown_after("import feast")
