"""In-process doubles of the cluster actors: `.method.remote(...)` answers like a Ray actor
handle (awaitable in an event loop, `.result()` in a constructor), without Ray."""

from __future__ import annotations

import asyncio
import concurrent.futures


class Reply(concurrent.futures.Future):
    """A finished actor call: awaitable in the event loop, `.result()` in a constructor."""

    def __init__(self, value):
        super().__init__()
        self.set_result(value)

    def __await__(self):
        return asyncio.wrap_future(self).__await__()


class ActorDouble:
    """`double.method.remote(*args)` calls `obj.method(*args)` and returns a Reply."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        method = getattr(self._obj, name)
        return type("Method", (), {"remote": staticmethod(lambda *a: Reply(method(*a)))})()


class Control:
    def __init__(self, experiment: dict):
        self.value = {"experiment": experiment, "generation": 0}

    def state(self):
        return self.value

    def set_experiment(self, experiment):
        self.value = {"experiment": experiment, "generation": self.value["generation"] + 1}
        return self.value

    def bump(self):
        self.value = {**self.value, "generation": self.value["generation"] + 1}
        return self.value
