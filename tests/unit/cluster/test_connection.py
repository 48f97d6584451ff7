"""Which cluster a command joins (a live `ray start` head, never a stale record of a dead one),
and what of Ray's console output reaches the user."""

from __future__ import annotations

import contextlib
import logging
import socket

import pytest

from app.cluster import connection
from app.cluster.connection import answers, haproxy_side_ports, started_head_address
from app.cluster.console import not_progress_bar_notice


@contextlib.contextmanager
def recorded_head(tmp_path):
    """A listening socket standing for a `ray start` head, recorded where Ray looks for it
    (under RAY_TMPDIR = tmp_path); yields its address, and stops listening on exit."""
    record = tmp_path / "ray" / "ray_current_cluster"
    record.parent.mkdir(exist_ok=True)
    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        live = f"127.0.0.1:{head.getsockname()[1]}"
        record.write_text(live + "\n")
        yield live


def test_a_live_ray_start_record_is_joined_and_a_stale_one_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # where Ray looks for `ray start`'s record
    assert started_head_address() is None  # no record: the command starts its own cluster
    with recorded_head(tmp_path) as live:
        assert started_head_address() == live
    assert started_head_address() is None  # the head is gone, its record stays: ignored


def test_answers_rejects_what_is_not_host_and_port():
    assert not answers("no-port-here")
    assert not answers("127.0.0.1:notaport")


def test_ray_datas_notice_that_progress_bars_are_off_stays_off_the_console():
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord(
            "ray.data._internal.progress", logging.WARNING, "p.py", 28, message, None, None
        )

    assert not not_progress_bar_notice(record("Progress bars disabled. To enable, set ..."))
    assert not_progress_bar_notice(record("Progress bars for operators disabled."))
    assert not_progress_bar_notice(record("A task failed; retrying"))


def test_haproxys_side_ports_move_off_a_port_another_local_service_holds(monkeypatch):
    for name in connection.HAPROXY_SIDE_PORTS:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as taken, socket.socket() as spare:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spare.bind(("127.0.0.1", 0))  # bound, not listening: free for a listener after close
        held, free = taken.getsockname()[1], spare.getsockname()[1]
        spare.close()
        names = list(connection.HAPROXY_SIDE_PORTS)
        monkeypatch.setattr(connection, "HAPROXY_SIDE_PORTS", {names[0]: held, names[1]: free})
        ports = haproxy_side_ports("haproxy")
    assert ports[names[1]] == str(free)  # a free default is kept
    assert ports[names[0]] != str(held) and int(ports[names[0]]) > 0
    monkeypatch.setenv(names[0], "7777")  # the user's choice stands
    assert names[0] not in haproxy_side_ports("haproxy")
    assert haproxy_side_ports("default") == {}


def test_the_dashboard_moves_off_a_port_another_cluster_holds(cfg):
    from app.cluster.connection import dashboard_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = taken.getsockname()[1]
        ray_cfg = cfg.ray.model_copy(update={"include_dashboard": True, "dashboard_port": held})
        moved = dashboard_port(ray_cfg)
        assert moved != held and moved > 0
        assert dashboard_port(ray_cfg.model_copy(update={"include_dashboard": False})) == held
    assert dashboard_port(ray_cfg) == held  # free again: the configured port


def test_the_local_ray_start_head_is_joined_as_auto_so_ray_sends_its_token(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with recorded_head(tmp_path) as live:
        assert connection.init_address(live) == "auto"
        assert connection.init_address("10.0.0.7:6379") == "10.0.0.7:6379"  # given: left as given
    assert connection.init_address(live) == live  # no live head: the address as given


def test_a_cluster_that_refuses_to_be_joined_is_one_line_naming_it(monkeypatch):
    def refuse(**kwargs):
        raise ConnectionError("Authentication token is missing or incorrect\n  at raylet ...")

    monkeypatch.setattr(connection.ray, "init", refuse)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(connection.ClusterUnavailable) as err:
        connection._join("10.0.0.7:6379")
    message = str(err.value)
    assert "\n" not in message and "10.0.0.7:6379" in message and "RAY_AUTH_MODE=token" in message
