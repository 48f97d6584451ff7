"""The dependency every route uses to reach its replica's `Ingress`."""

from fastapi import Header, HTTPException

from app.serving.auth import AdminError
from app.serving.ingress import Ingress


async def current_ingress() -> Ingress:
    """The replica's `Ingress` (Serve's servable object; tests override this dependency).

    `async` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
    hop on every request that cost the replica a measurable share of its CPU under load."""
    from ray import serve

    return serve.get_replica_context().servable_object


def require_admin(ingress: Ingress, authorization: str | None) -> None:
    try:
        ingress.check_admin(authorization)
    except AdminError as exc:
        raise HTTPException(exc.status, str(exc), headers=exc.headers) from None


AuthHeader = Header(None)
