"""The read-only audit web UI: a Starlette app rendering ``guard.audit.query`` views.

Server-rendered HTML (Jinja2, autoescape on), inline CSS, no scripts at all: the pages show
untrusted text (prompt injections), so besides escaping, a Content-Security-Policy forbids
every script and every external fetch. The database is opened read-only (``mode=ro``) per
request; only GET/HEAD routes exist; the Host header must name loopback (DNS rebinding).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from labelgate.guard.audit.backend import is_dsn, open_store
from labelgate.guard.audit.query import AuditReader, parse_when
from labelgate.guard.audit.views import NotFound, TraceFilter

TEMPLATES = Path(__file__).with_name("templates")
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FILTER_FIELDS = ("since", "until", "agent", "session", "model", "decision", "label", "q")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every page shows untrusted text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = lambda v: (
        v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, indent=1)
    )
    env.filters["urlpart"] = lambda v: quote(str(v), safe="")
    env.filters["urlpath"] = lambda v: quote(str(v), safe="/:")  # sample ids hold "/"
    env.filters["ms"] = lambda v: "" if v is None else f"{v:.2f} ms"
    return env


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)  # type: ignore[arg-type]


class UI:
    def __init__(self, db_path: str | Path, shown: str) -> None:
        self.db_path = db_path  # a SQLite file or a PostgreSQL URL
        self.shown = shown  # as the page names it (a URL without its password)
        self.env = environment()

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(db=self.shown, **context)
        return HTMLResponse(html, status_code=status)

    def reader(self) -> AuditReader:
        return AuditReader.open(self.db_path)

    async def traces(self, request: Request) -> Response:
        params = {k: request.query_params.get(k, "").strip() for k in FILTER_FIELDS}
        offset = _int(request.query_params.get("offset"), 0)
        try:
            flt = TraceFilter(
                since=parse_when(params["since"]) if params["since"] else None,
                until=parse_when(params["until"]) if params["until"] else None,
                agent=params["agent"] or None,
                session=params["session"] or None,
                model=params["model"] or None,
                decision=params["decision"] or None,
                label=params["label"] or None,
                search=params["q"] or None,
                limit=50,
                offset=offset,
            )
        except (ValueError, ValidationError) as exc:
            return self.page("error.html", 400, message=f"bad filter: {exc}")
        with self.reader() as reader:
            found = reader.list_traces(flt)
            options = {c: reader.distinct(c) for c in ("agent", "model")}
        query = {k: v for k, v in params.items() if v}
        return self.page(
            "traces.html",
            traces=found,
            params=params,
            options=options,
            offset=offset,
            next_url=f"/traces?{urlencode({**query, 'offset': offset + 50})}",
            prev_url=f"/traces?{urlencode({**query, 'offset': max(0, offset - 50)})}",
        )

    async def trace(self, request: Request) -> Response:
        ident = request.path_params["ident"]
        with self.reader() as reader:
            try:
                view = reader.trace(ident)
            except NotFound as exc:
                return self.page("error.html", 404, message=str(exc))
        return self.page("trace.html", trace=view, ident=ident)

    async def runs(self, request: Request) -> Response:
        with self.reader() as reader:
            runs = reader.eval_runs()
        return self.page("runs.html", runs=runs)

    async def run(self, request: Request) -> Response:
        with self.reader() as reader:
            try:
                run = reader.eval_run(request.path_params["run_id"])
            except NotFound as exc:
                return self.page("error.html", 404, message=str(exc))
        return self.page("run.html", run=run)

    async def sample(self, request: Request) -> Response:
        run_id, sample_id = request.path_params["run_id"], request.path_params["sample_id"]
        with self.reader() as reader:
            try:
                sample = reader.eval_sample(run_id, sample_id)
            except NotFound as exc:
                return self.page("error.html", 404, message=str(exc))
        return self.page("sample.html", sample=sample)


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value else default
    except ValueError:
        return default


def create_ui_app(db_path: str | Path) -> Starlette:
    """The UI over ``db_path`` (a SQLite file, or a PostgreSQL URL: ``open_store``); it must
    exist (the UI never creates or migrates a store)."""
    target = db_path if is_dsn(db_path) else Path(db_path)
    with open_store(target, readonly=True) as store:  # fail now, not on the first page
        shown = store.shown
    ui = UI(target, shown)

    async def home(request: Request) -> Response:
        return RedirectResponse("/traces", status_code=302)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", home, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/traces", ui.traces, methods=["GET", "HEAD"]),
        Route("/traces/{ident:path}", ui.trace, methods=["GET", "HEAD"]),
        Route("/runs", ui.runs, methods=["GET", "HEAD"]),
        Route("/runs/{run_id}", ui.run, methods=["GET", "HEAD"]),
        Route("/runs/{run_id}/samples/{sample_id:path}", ui.sample, methods=["GET", "HEAD"]),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.ui_target = shown
    return app
