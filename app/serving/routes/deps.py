"""The routes' dependencies: the replica's `Ingress` and, through it, each service.

Routes name what they need with the `Annotated` aliases below. Admin authentication is the
`admin` dependency itself: a route that takes `AdminService` cannot run without the token.
"""

from typing import Annotated

from fastapi import Depends, Header, HTTPException

from app.serving.auth import AuthError
from app.serving.ingress import Ingress
from app.serving.services import Admin, Outcomes, Reads


async def current_ingress() -> Ingress:
    """The replica's `Ingress` (Serve's servable object; tests override this dependency).

    `async` on purpose, as are the dependencies below: FastAPI runs a plain `def` dependency
    in its thread pool, a thread hop on every request that cost the replica a measurable
    share of its CPU under load."""
    from ray import serve

    return serve.get_replica_context().servable_object


IngressDep = Annotated[Ingress, Depends(current_ingress)]


async def reads(ingress: IngressDep) -> Reads:
    return ingress.reads


async def outcomes(ingress: IngressDep) -> Outcomes:
    return ingress.outcomes


async def admin(ingress: IngressDep, authorization: Annotated[str | None, Header()] = None) -> Admin:
    """The admin service, for a caller that sent the admin token (401/403 otherwise)."""
    try:
        ingress.admin.check(authorization)
    except AuthError as exc:
        raise HTTPException(exc.status, str(exc), headers=exc.headers) from None
    return ingress.admin


async def producer(ingress: IngressDep, authorization: Annotated[str | None, Header()] = None) -> str:
    """The outcome producer whose token the caller sent (401/403 otherwise): outcomes are an
    input of their own, never taken from whoever got a prediction, nor with the admin token."""
    try:
        return ingress.outcomes.producer(authorization)
    except AuthError as exc:
        raise HTTPException(exc.status, str(exc), headers=exc.headers) from None


ReadsDep = Annotated[Reads, Depends(reads)]
ProducerDep = Annotated[str, Depends(producer)]
OutcomesDep = Annotated[Outcomes, Depends(outcomes)]
AdminDep = Annotated[Admin, Depends(admin)]
