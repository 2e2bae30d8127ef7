"""The monitor's findings as the service shows them: the latest drift report and the page."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from modelloop.service import api_schema as schema
from modelloop.service.errors import NotFound
from modelloop.service.headers import report_headers
from modelloop.service.routes_v1 import json_response
from modelloop.service.state import Service
from modelloop.store.reports import DriftReports, MonitorStates, ReportPages


def reports_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["monitoring"])
    reports, pages, states = (
        DriftReports(service.db),
        ReportPages(service.db),
        MonitorStates(service.db),
    )

    @router.get(
        "/v1/models/{model}/drift",
        summary="The latest drift report (JSON)",
        responses=schema.responses(404, 503, body=schema.DriftReport),
    )
    async def drift(model: schema.ModelName) -> Response:
        service.models.require_known(model)
        latest = await asyncio.to_thread(reports.latest, model)
        state = await asyncio.to_thread(states.get, model)
        if latest is None:
            raise NotFound(
                f"model {model!r} has no drift report yet: the monitor writes one "
                "per window of traffic"
            )
        report = dict(latest["report"])
        report.pop("window", None)
        return json_response(
            {
                "model": model,
                "version": latest["version"],
                "time": latest["ts"],
                "window_start": latest["window_start"],
                "window_end": latest["window_end"],
                "rows": latest["rows"],
                "verdict": latest["verdict"],
                "state": state.state if state else latest["state"],
                **report,
            }
        )

    @router.get(
        "/v1/models/{model}/report",
        summary="The drift report page (HTML)",
        response_class=HTMLResponse,
        responses=schema.responses(404, 503, text="the page", html=True),
    )
    async def page(model: schema.ModelName) -> Response:
        service.models.require_known(model)
        html = await asyncio.to_thread(pages.get, model)
        if html is None:
            raise NotFound(f"model {model!r} has no report page yet: the monitor writes it")
        return HTMLResponse(html, headers=report_headers(html))

    return router
