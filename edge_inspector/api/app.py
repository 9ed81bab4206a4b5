"""The FastAPI application: /api/v1 (inspect, status, inspections, control, feed), /metrics, /.

Every route is a communicator: control goes through the station's command table (``commands.py``),
status is its ``status`` command, the history is read from SQLite on a connection of its own. No
route touches the worker: the feed reads its own bounded buffer (``feed.py``).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from edge_inspector import commands
from edge_inspector.api import history
from edge_inspector.api.feed import Feed
from edge_inspector.api.inspect import BadUpload, UploadInspector
from edge_inspector.api.metrics import Metrics
from edge_inspector.outputs.store import connect
from edge_inspector.review import labels

STATIC = Path(__file__).with_name("static")
PREFIX = "/api/v1"
CONTROL = ("pause", "resume", "reload")
HEARTBEAT_S = 15.0


@dataclass
class ApiContext:
    station: Any  # lifecycle.StationView with ``dispatcher``
    feed: Feed
    metrics: Metrics
    uploads: UploadInspector
    token: str | None = None
    max_upload_bytes: int = 32 * 2**20

    @property
    def db_path(self) -> Path:
        return self.station.cfg.db_path

    @property
    def data_dir(self) -> Path:
        return Path(self.station.cfg.station.data_dir)


class ControlBody(BaseModel):
    value: str = Field("", description="The command's optional text (pause: a reason; resume: a note).")


class LabelBody(BaseModel):
    label: Literal["good", "defective"] | None = Field(None, description=(
        "What the part is, whatever the station decided (or give verdict)."))
    verdict: Literal["defect", "false_alarm"] | None = Field(None, description=(
        "The page's wording: a true defect (defective), or a false alarm (good). Used when label is absent."))
    defect_type: str | None = Field(None, max_length=64, description=(
        "What the defect is (label defective), a recipe's defect name; case, spaces and hyphens are "
        "folded (\"Pin hole\" is pin_hole)."))
    reviewer: str = Field("", max_length=64, description="Who reviewed it.")
    note: str = Field("", max_length=500, description="Anything else.")


def create_app(ctx: ApiContext) -> FastAPI:
    def authorized(request: Request) -> None:
        if ctx.token is None:
            return
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.query_params.get("token", "")
        if not hmac.compare_digest(given.encode(), ctx.token.encode()):
            raise HTTPException(401, "a valid token is required (Authorization: Bearer <api.token>)")

    app = FastAPI(title="edge-inspector", version="1", openapi_url=f"{PREFIX}/openapi.json",
                  docs_url=f"{PREFIX}/docs", redoc_url=None, dependencies=[Depends(authorized)])

    def dispatch(name: str, value: str = "") -> commands.Reply:
        return ctx.station.dispatcher.dispatch(commands.Request(name, value, via="http"))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        path = STATIC / name
        if name not in {p.name for p in STATIC.iterdir()} or not path.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(path)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get(f"{PREFIX}/status", summary="The live state: what `edge-inspector status --json` says")
    def status() -> dict[str, Any]:
        reply = dispatch("status")
        if not reply.ok:
            raise HTTPException(503, reply.error)
        return reply.data["status"]

    @app.post(f"{PREFIX}/control/{{name}}", summary="pause, resume or reload, through the command table")
    def control(name: Literal["pause", "resume", "reload"], body: ControlBody | None = None) -> JSONResponse:
        reply = dispatch(name, body.value if body else "")
        return JSONResponse(reply.to_json(), status_code=200 if reply.ok else 409)

    @app.get(f"{PREFIX}/inspections", summary="The inspections, newest first, paged and filtered")
    def inspections(outcome: Literal["PASS", "REJECT", "NO-READ"] | None = None, camera: str | None = None,
                    reason: str | None = None,
                    since: float | None = Query(None, description="trigger time >= (unix seconds)"),
                    until: float | None = Query(None, description="trigger time < (unix seconds)"),
                    limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)) -> dict[str, Any]:
        return history.list_inspections(ctx.db_path, history.Query(outcome, camera, reason, since, until,
                                                                   limit, offset))

    @app.get(f"{PREFIX}/inspections/{{part_id}}", summary="One inspection: its row, evidence, labels")
    def inspection(part_id: str) -> dict[str, Any]:
        row = history.get_inspection(ctx.db_path, part_id)
        if row is None:
            raise HTTPException(404, f"no inspection {part_id!r}")
        row["image_url"] = f"{PREFIX}/inspections/{part_id}/image" if row.get("image_path") else None
        return row

    @app.get(f"{PREFIX}/inspections/{{part_id}}/image", summary="The saved image, with its overlay")
    def image(part_id: str) -> FileResponse:
        path = history.image_file(ctx.db_path, ctx.data_dir, part_id)
        if path is None:
            raise HTTPException(404, f"no saved image for {part_id!r}")
        return FileResponse(path)

    @app.post(f"{PREFIX}/inspections/{{part_id}}/labels", status_code=201,
              summary="Store a review label with the inspection")
    def add_label(part_id: str, body: LabelBody) -> dict[str, Any]:
        db = connect(ctx.db_path)
        try:
            label = body.label or (labels.label_of_verdict(body.verdict) if body.verdict else None)
            if label is None:
                raise HTTPException(422, "give label (good or defective) or verdict (defect or false_alarm)")
            defect_type = body.defect_type if label == "defective" else None
            return labels.add_label(db, part_id, label, defect_type, body.reviewer, body.note, via="http")
        except labels.UnknownPart as exc:
            raise HTTPException(404, f"no inspection {part_id!r}") from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        finally:
            db.conn.close()

    @app.post(f"{PREFIX}/inspect", summary="Inspect an uploaded image (and an optional reference)")
    async def inspect(image: UploadFile = File(description="The image (PNG, JPEG, BMP, TIFF, ...)"),
                      reference: UploadFile | None = File(None, description="A reference image")
                      ) -> dict[str, Any]:
        data = await _read(image, ctx.max_upload_bytes)
        ref = await _read(reference, ctx.max_upload_bytes) if reference is not None else None
        try:
            return await run_in_threadpool(ctx.uploads.inspect, data, image.filename or "image", ref,
                                           (reference.filename if reference else None) or "reference")
        except BadUpload as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get(f"{PREFIX}/feed", summary="The live decisions (server-sent events, event: decision)")
    async def feed(request: Request) -> StreamingResponse:
        sub = ctx.feed.subscribe()

        async def events():
            try:
                yield ": connected\n\n"
                while not sub.closed and not await request.is_disconnected():
                    batch = await sub.next_batch(HEARTBEAT_S)
                    if not batch:
                        yield ": keep-alive\n\n"
                    for event in batch:
                        yield f"event: decision\ndata: {json.dumps(event)}\n\n"
            finally:
                ctx.feed.unsubscribe(sub)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return app


async def _read(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"{upload.filename or 'the upload'}: larger than {limit // 2**20} MiB "
                            "(api.max_upload_mb)")
    if not data:
        raise HTTPException(422, f"{upload.filename or 'the upload'}: empty file")
    return data
