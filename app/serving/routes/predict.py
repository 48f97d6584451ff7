"""POST /predict and POST /feedback."""

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse

from app.serving.receipts import ReceiptError
from app.serving.routes.deps import IngressDep, OutcomesDep, ProducerDep
from app.serving.schemas import Feedback, FeedbackAck, Prediction, PredictionBatch
from app.serving.scoring import RowError


def router(PredictRequest: type) -> APIRouter:
    """The predict router for this dataset's request model (its features are typed per column)."""
    api = APIRouter()

    @api.post("/predict", response_model=Prediction | PredictionBatch)
    async def predict(body: PredictRequest, ingress: IngressDep):  # type: ignore[valid-type]
        batch = body.instances is not None
        try:
            out = await ingress.predict(body.rows(), batch=batch)
        except RowError as exc:
            field = "entity_id" if exc.status == 404 else None
            raise HTTPException(exc.status, {"error": str(exc), "field": field}) from None
        # The answers are ours and already checked: a JSON response skips FastAPI's second
        # validation against `response_model` (which still documents them in /docs).
        return JSONResponse({"predictions": out} if batch else out[0])

    @api.post("/feedback", response_model=FeedbackAck)
    async def feedback(body: Feedback, outcomes: OutcomesDep, producer: ProducerDep):
        try:
            status = await outcomes.record(
                body.request_id, body.label, body.feedback_token, producer=producer
            )
        except ReceiptError as exc:
            raise HTTPException(exc.status, {"error": str(exc), "field": "request_id"}) from None
        return {"request_id": body.request_id, "status": status}

    return api
