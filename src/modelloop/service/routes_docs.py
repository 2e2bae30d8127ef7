"""`/openapi.json` and the pages that read it (`/docs`, `/redoc`), built off the event loop.

The schema lists an operation per served model (model_openapi.py), rebuilt from registry reads
when what serves changes; FastAPI's own route would build it on the loop, so a visit to /docs
with the registry slow to answer would hold every prediction up.
"""

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse

OPENAPI_URL = "/openapi.json"
REDIRECT_URL = "/docs/oauth2-redirect"


def docs_router(openapi: Callable[[], dict[str, Any]], title: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @router.get(OPENAPI_URL)
    async def openapi_json(request: Request) -> JSONResponse:
        schema = await asyncio.to_thread(openapi)
        prefix = root(request)
        if prefix and prefix not in {s.get("url") for s in schema.get("servers", [])}:
            schema = {**schema, "servers": [{"url": prefix}, *schema.get("servers", [])]}
        return JSONResponse(schema)

    @router.get("/docs")
    async def swagger_ui(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_swagger_ui_html(
            openapi_url=prefix + OPENAPI_URL,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=prefix + REDIRECT_URL,
        )

    @router.get(REDIRECT_URL)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url=root(request) + OPENAPI_URL, title=f"{title} - ReDoc")

    return router
