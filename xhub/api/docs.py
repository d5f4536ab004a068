"""``/docs``: the OpenAPI document in Swagger UI, from assets vendored in ``xhub/console/static/vendor`` (no CDN:
the hub works offline). FastAPI's own docs pages load Swagger UI from a CDN, so they are switched off."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["mount"]

VENDOR = "/docs/assets"
ASSETS = Path(__file__).resolve().parents[1] / "console" / "static" / "vendor"


def mount(app: FastAPI) -> None:
    app.mount(VENDOR, StaticFiles(directory=str(ASSETS)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="xoev-hub API",
                                   swagger_js_url=f"{VENDOR}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{VENDOR}/swagger-ui.css",
                                   swagger_favicon_url=f"{VENDOR}/favicon-32x32.png")
