"""The service client against a real HTTP server that breaks a response inside its body."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.serving.client import ServiceClient


@pytest.fixture
def server_breaking_bodies():
    """Answers POST /predict; the first `state["broken"]` answers stop after their headers."""
    state = {"broken": 1, "calls": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            state["calls"] += 1
            body = json.dumps({"variant": "champion", "model_version": 1}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state["broken"] > 0:  # a replica dying as it answers: headers out, body never
                state["broken"] -= 1
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()


def test_a_body_broken_after_the_headers_is_asked_again_once(server_breaking_bodies):
    url, state = server_breaking_bodies
    assert ServiceClient(url).predict_entity(1) == {"variant": "champion", "model_version": 1}
    assert state["calls"] == 2


def test_a_body_broken_twice_is_an_error_not_an_endless_retry(server_breaking_bodies):
    url, state = server_breaking_bodies
    state["broken"] = 2
    with pytest.raises(OSError, match="Connection broken"):
        ServiceClient(url).predict_entity(1)
    assert state["calls"] == 2
