"""A replica's routing follows the control actor, and a stale state never undoes a newer one."""

from __future__ import annotations

import asyncio

from app.registry.registry import CHAMPION


def test_a_state_fetched_before_a_change_does_not_undo_it(replica):
    cfg, routing = replica.cfg, replica.ingress.routing
    stale = routing.control.state.remote().result()  # what a background sync had fetched
    champion_only = cfg.serve.experiment.model_copy(update={"split": {"champion": 1.0}})
    asyncio.run(replica.ingress.admin.set_experiment(champion_only))
    assert routing.current.split == {CHAMPION: 1.0}
    asyncio.run(routing.apply_async(stale))  # the sync finishing after the admin change
    assert routing.current.split == {CHAMPION: 1.0}, "the older generation is ignored"
