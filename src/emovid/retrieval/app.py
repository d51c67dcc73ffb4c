"""The recommend-videos web page: a FastAPI app serving one static HTML page and a JSON API under ``/api``.

Routes (OpenAPI schema at ``/openapi.json``, interactive docs at ``/docs``):

* ``GET /`` — the page (search box, emotion filter chips, result cards, video player);
* ``GET /api/info`` — index mode, encoder, size, emotion names;
* ``GET /api/search?q=TEXT&k=10&emotion=anger&filter=joy&use_emotion=true`` — ranked results, each with its
  ``rank_with`` and ``rank_without`` the query's emotion term (the page shows both);
* ``GET /api/videos/{id}/file`` — the video file (HTTP range requests supported, for seeking);
* ``GET /api/videos/{id}/thumb`` — a JPEG of the video's middle frame.

Safety: files are served only by index id, and only when the file resolves (symlinks included) inside one of the
roots recorded in the index; nothing else on disk is reachable. Bad queries (empty, too long, unknown emotion, k
out of range, unknown id) get 4xx answers with a short ``detail`` message that never repeats the request: a 422
names the field and what is wrong (``{"detail": "q: String should have at most 500 characters", "errors":
[{"field": "q", "message": ...}]}``), a query string over :data:`MAX_QUERY_STRING_BYTES` is refused with 414
before any parsing. ``emovid serve`` binds 127.0.0.1 by default.
"""

import importlib.resources
import os
from typing import Annotated

from emovid.data.readers.captions import PLUTCHIK_EMOTIONS
from emovid.errors import EmovidError
from emovid.retrieval.search import MAX_QUERY_CHARS, Searcher

# A q of MAX_QUERY_CHARS characters, percent-encoded UTF-8, takes at most 9 bytes each; the rest is small.
MAX_QUERY_STRING_BYTES = 9 * MAX_QUERY_CHARS + 1024
MAX_EMOTION_TERMS = 2 * len(PLUTCHIK_EMOTIONS)
MAX_EMOTION_CHARS = 32
_MAX_MESSAGE_CHARS = 200


def create_app(index: str | os.PathLike | Searcher, device: str = "cpu"):
    """The FastAPI application for one index folder (or a ready :class:`Searcher`).

    (This module has no ``from __future__ import annotations``: FastAPI reads the route annotations at run time.)
    """
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel

    searcher = index if isinstance(index, Searcher) else Searcher(index, device=device)
    app = FastAPI(
        title="emovid video search",
        description="Emotion-aware text-to-video search over one emovid index.",
        version="1",
    )
    app.state.searcher = searcher
    app.add_middleware(_QueryStringCap)
    thumbs: dict[int, bytes] = {}

    class FieldError(BaseModel):
        field: str
        message: str

    class BadRequest(BaseModel):
        detail: str
        errors: list[FieldError]

    @app.exception_handler(RequestValidationError)
    async def short_validation_error(request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 repeats each bad value ("input"), so a 70 KB query came back as 70 KB of JSON.
        return _bad_request([(_field(e.get("loc", ())), str(e.get("msg", "invalid value"))) for e in exc.errors()])

    class Hit(BaseModel):
        rank: int
        id: int
        score: float
        video_id: str | None
        caption: str
        duration: float | None
        emotions: dict[str, float]
        dominant: list[str]
        emotion_source: str | None
        rank_with: int | None = None  # rank with the query's emotion term (None: beyond the first 1000)
        rank_without: int | None = None  # rank without it
        video_url: str
        thumb_url: str

    class SearchAnswer(BaseModel):
        query: str
        mode: str
        emotions: list[str]
        emotion_source: str
        results: list[Hit]

    class Info(BaseModel):
        mode: str
        description: str
        videos: int
        emotions: list[str]
        encoder: dict

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        html = importlib.resources.files("emovid.retrieval").joinpath("static", "index.html").read_text("utf-8")
        return HTMLResponse(html)

    @app.get("/api/info", response_model=Info)
    def info() -> Info:
        return Info(
            mode=searcher.mode,
            description=searcher.describe(),
            videos=len(searcher.index),
            emotions=list(PLUTCHIK_EMOTIONS),
            encoder=searcher.index.info["encoder"],
        )

    @app.get("/api/search", response_model=SearchAnswer, responses={422: {"model": BadRequest}})
    def api_search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="query text")],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        emotion: Annotated[list[str], Query(description="emotion term (default: from the text)")] = [],  # noqa: B006
        filter: Annotated[list[str], Query(description="keep videos showing one of these")] = [],  # noqa: A002,B006
        use_emotion: bool = True,
    ) -> SearchAnswer:
        for name, terms in (("emotion", emotion), ("filter", filter)):
            if len(terms) > MAX_EMOTION_TERMS or any(len(t) > MAX_EMOTION_CHARS for t in terms):
                return _bad_request(
                    [(name, f"at most {MAX_EMOTION_TERMS} emotion terms of at most {MAX_EMOTION_CHARS} characters")]
                )
        try:
            res = searcher.search(
                q, k=k, emotions=emotion, filter_emotions=filter, use_emotion=use_emotion, other_rank=True
            )
        except EmovidError as e:
            raise HTTPException(status_code=400, detail=e.message) from e
        hits = [
            Hit(
                **{key: h[key] for key in Hit.model_fields if key in h and key not in ("video_url", "thumb_url")},
                video_url=f"/api/videos/{h['id']}/file",
                thumb_url=f"/api/videos/{h['id']}/thumb",
            )
            for h in res.hits
        ]
        return SearchAnswer(
            query=res.query, mode=res.mode, emotions=res.emotions, emotion_source=res.emotion_source, results=hits
        )

    def _path(vid: int):
        if not 0 <= vid < len(searcher.index):
            raise HTTPException(status_code=404, detail=f"no video {vid} in the index")
        try:
            p = searcher.index.resolve_path(vid)
        except PermissionError as e:
            raise HTTPException(status_code=403, detail="this file is outside the indexed folders") from e
        if not p.is_file():
            raise HTTPException(status_code=404, detail="the video file is gone")
        return p

    @app.get("/api/videos/{vid}/file", responses={200: {"content": {"video/mp4": {}}}})
    def video_file(vid: int):
        p = _path(vid)
        media = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime"}
        return FileResponse(p, media_type=media.get(p.suffix.lower(), "application/octet-stream"))

    @app.get("/api/videos/{vid}/thumb", responses={200: {"content": {"image/jpeg": {}}}})
    def video_thumb(vid: int):
        p = _path(vid)
        if vid not in thumbs:
            try:
                thumbs[vid] = _thumbnail(p)
            except EmovidError as e:
                raise HTTPException(status_code=404, detail=f"no thumbnail: {e.message}") from e
        return Response(thumbs[vid], media_type="image/jpeg")

    return app


def _field(loc) -> str:
    """``("query", "q")`` -> ``q``; ``("path", "vid")`` -> ``vid``; a body error -> ``body``."""
    parts = [str(p) for p in loc]
    return ".".join(parts[1:]) or (parts[0] if parts else "request")


def _bad_request(errors: list[tuple[str, str]]):
    from fastapi.responses import JSONResponse

    rows = [{"field": f[:_MAX_MESSAGE_CHARS], "message": m[:_MAX_MESSAGE_CHARS]} for f, m in errors[:10]]
    detail = "; ".join(f"{r['field']}: {r['message']}" for r in rows) or "invalid request"
    return JSONResponse(status_code=422, content={"detail": detail, "errors": rows})


class _QueryStringCap:
    """Refuse an over-long query string with 414 before FastAPI parses (and would echo) it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        size = len(scope.get("query_string", b"")) if scope["type"] == "http" else 0
        if size > MAX_QUERY_STRING_BYTES:
            from fastapi.responses import JSONResponse

            msg = f"query string too long ({size} bytes; at most {MAX_QUERY_STRING_BYTES})"
            await JSONResponse(status_code=414, content={"detail": msg})(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _thumbnail(path, width: int = 320) -> bytes:
    import cv2

    from emovid.video import VideoReader

    with VideoReader(path, threads=1) as r:
        n = len(r)
        h, w = r.info.height, r.info.width
        size = (max(1, round(h * width / w)), width) if w > width else None
        frame = r.get_frames([max(0, n // 2)], size=size)[0]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:  # pragma: no cover
        raise EmovidError("could not encode the thumbnail", path)
    return buf.tobytes()
