"""Named, detached actors: one of a kind per storage root, restarted by Ray whenever it dies."""

from __future__ import annotations

import ray

ACTOR_NAMESPACE = "mlsys"


def actor_name(kind: str, storage_root: str) -> str:
    """One actor of a kind per storage root, so two deployments on one cluster never share state."""
    import hashlib

    return f"mlsys-{kind}-{hashlib.sha256(storage_root.encode()).hexdigest()[:8]}"


def call_self_after_init(method: str) -> None:
    """From an actor's constructor: call its own `method` once the constructor returns (a
    call to itself, queued behind construction). Starts a detached actor's background loop
    at creation and again after every restart, not at its first caller's call. Does nothing
    outside an actor (the class used as a plain object)."""
    if not ray.is_initialized():  # asking for the runtime context would start a local Ray
        return
    try:
        handle = ray.get_runtime_context().current_actor
    except Exception:  # not in an actor
        return
    getattr(handle, method).remote()


def detached_actor(cls: type, kind: str, storage_root: str, *args, **options):
    """Get or create a named, detached actor that Ray restarts whenever it dies.

    Detached: it outlives the process that created it (a CLI command, a replica). Any number of
    callers get the same actor; a restarted one re-runs its constructor (rebuild from disk there)."""
    return (
        ray.remote(cls)
        .options(
            name=actor_name(kind, storage_root),
            namespace=ACTOR_NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            num_cpus=0,  # mostly waiting; it must never keep a replica or a trial from being placed
            **options,
        )
        .remote(*args)
    )


def existing_actor(kind: str, storage_root: str):
    """The named actor of this kind for this storage root if it runs, else None (never creates
    one: a command that reads a running service must not start its actors)."""
    try:
        return ray.get_actor(actor_name(kind, storage_root), namespace=ACTOR_NAMESPACE)
    except ValueError:  # no such actor
        return None
