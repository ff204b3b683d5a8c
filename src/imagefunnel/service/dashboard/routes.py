"""Dashboard pages, rendered on the server from the same store the API reads.

Pages carry a strict Content-Security-Policy (scripts, styles and images from this origin only, no
inline script), and Jinja autoescapes every value: prompts, names, file names, reasons. Live parts
(the job page's progress, uploads, feedback) are small static scripts that call the API with the
sign-in cookie.
"""

from __future__ import annotations

import json
from collections import defaultdict
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from imagefunnel.service.auth import KEY_COOKIE, authenticate_request
from imagefunnel.service.dashboard.charts import bar_pairs, line_chart
from imagefunnel.service.dashboard.submit import install_submit
from imagefunnel.service.deps import get_runtime
from imagefunnel.service.errors import ApiError
from imagefunnel.store.tenancy import Tenant

__all__ = ["CSP", "install_dashboard"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_folder = resources.files("imagefunnel.service.dashboard")
# autoescape=True for every template (``.j2`` names would escape nothing under the default selection).
templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(str(_folder / "templates")), autoescape=True)
)
router = APIRouter(include_in_schema=False)


def _tenant(request: Request) -> Tenant | None:
    runtime = get_runtime(request)
    try:
        return authenticate_request(request, runtime.tenancy, runtime.limiter)
    except ApiError:
        return None


def _page(request: Request, template: str, tenant: Tenant, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, {"tenant": tenant, **context})
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


@router.get("/login")
def login_page(request: Request) -> HTMLResponse:
    response = templates.TemplateResponse(request, "login.html.j2", {"tenant": None})
    response.headers["Content-Security-Policy"] = CSP
    return response


@router.post("/login")
def login(request: Request, key: Annotated[str, Form(max_length=200)]) -> Response:
    if get_runtime(request).tenancy.authenticate(key.strip()) is None:
        return templates.TemplateResponse(
            request, "login.html.j2", {"tenant": None, "error": "unknown key"}, status_code=401
        )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(KEY_COOKIE, key.strip(), httponly=True, samesite="strict", max_age=7 * 24 * 3600)
    return response


def _jobs(
    request: Request, tenant: Tenant, *, error: str | None = None, spec_text: str = "", status_code: int = 200
) -> HTMLResponse:
    runtime = get_runtime(request)
    rows, total = runtime.jobs.page(tenant.id, limit=100)
    spent = runtime.jobs.spent_by_job([r.id for r in rows])
    response = _page(
        request, "jobs.html.j2", tenant, jobs=rows, total=total, spent=spent, error=error, spec_text=spec_text
    )
    response.status_code = status_code
    return response


@router.get("/")
def jobs_page(request: Request) -> Response:
    tenant = _tenant(request)
    if tenant is None:
        return _login()
    return _jobs(request, tenant)


def _candidates(runtime: Any, job_id: str) -> list[dict[str, Any]]:
    rows = runtime.store.candidates(job_id)
    scores = runtime.store.scores([r.id for r in rows])
    return [
        {
            "id": r.id,
            "provider": r.provider,
            "passed": r.passed,
            "delivered": r.delivered,
            "rank": r.rank,
            "charged_usd": r.charged_usd,
            "dimensions": [
                {
                    "name": s.dimension,
                    "value": s.value,
                    "threshold": s.threshold,
                    "passed": s.passed,
                    "reason": s.reason,
                }
                for s in scores[r.id]
            ],
        }
        for r in rows
    ]


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    tenant = _tenant(request)
    if tenant is None:
        return _login()
    runtime = get_runtime(request)
    job = runtime.jobs.get(tenant.id, job_id) if len(job_id) <= 64 else None
    if job is None:
        return _page(request, "missing.html.j2", tenant, what=f"job {job_id}")
    candidates = _candidates(runtime, job.id)
    rejects: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cand in candidates:
        if not cand["passed"]:
            failing = next((d["name"] for d in cand["dimensions"] if not d["passed"]), "undecodable")
            rejects[failing].append(cand)
    delivered = sorted((c for c in candidates if c["delivered"]), key=lambda c: c["rank"] or 0)
    return _page(
        request,
        "job.html.j2",
        tenant,
        job=job,
        spec=json.loads(job.spec_json),
        spent=runtime.store.spent_usd(job.id),
        candidates=candidates,
        delivered=delivered,
        rejects=sorted(rejects.items(), key=lambda kv: -len(kv[1])),
        passed=sum(c["passed"] for c in candidates),
        ledger=runtime.jobs.ledger(tenant.id, job_id=job.id),
        quote=runtime.quotes.get(job.id),
    )


@router.get("/ledger")
def ledger_page(request: Request) -> Response:
    tenant = _tenant(request)
    if tenant is None:
        return _login()
    rows = get_runtime(request).jobs.ledger(tenant.id)
    by_provider: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    cumulative: list[tuple[float, float]] = []
    total = 0.0
    for row in rows:
        by_provider[row.provider][0] += row.quoted_usd
        by_provider[row.provider][1] += row.charged_usd or 0.0
        total += row.charged_usd or 0.0
        cumulative.append((row.started_at.timestamp(), total))
    bars = bar_pairs(
        [(p, q, c) for p, (q, c) in sorted(by_provider.items())],
        title="by provider",
        labels=("quoted", "charged"),
    )
    line = line_chart(cumulative, title="charged over time", unit=" $", lo=0.0)
    return _page(request, "ledger.html.j2", tenant, rows=rows[-200:], bars=bars, line=line, total=total)


@router.get("/providers")
async def providers_page(request: Request) -> Response:
    tenant = _tenant(request)
    if tenant is None:
        return _login()
    runtime = get_runtime(request)
    statuses = runtime.monitor.statuses or await runtime.monitor.refresh()
    return _page(request, "providers.html.j2", tenant, statuses=statuses)


@router.get("/providers/{name}")
def provider_page(request: Request, name: str) -> Response:
    tenant = _tenant(request)
    if tenant is None:
        return _login()
    history = get_runtime(request).samples.history(name[:80])
    t = [row.at.timestamp() for row in history]
    charts = [
        line_chart(
            [(x, r.price_usd) for x, r in zip(t, history, strict=True) if r.price_usd is not None],
            title="price per 1024² image",
            unit=" $",
        ),
        line_chart(
            [(x, r.pass_rate) for x, r in zip(t, history, strict=True) if r.pass_rate is not None],
            title="learned pass rate",
            lo=0.0,
        ),
        line_chart(
            [(x, 1.0 if r.ok else 0.0) for x, r in zip(t, history, strict=True)],
            title="health (1 = up)",
            lo=0.0,
        ),
        line_chart(
            [(x, r.latency_s) for x, r in zip(t, history, strict=True) if r.latency_s is not None],
            title="latency",
            unit=" s",
            lo=0.0,
        ),
    ]
    return _page(request, "provider.html.j2", tenant, provider=name, charts=charts, history=history[-20:])


@router.get("/evaluations")
def evaluations_page(request: Request) -> Response:
    tenant = _tenant(request)
    if tenant is None:
        return _login()
    rows = get_runtime(request).evaluations.page(tenant.id, limit=50)
    return _page(request, "evaluations.html.j2", tenant, evaluations=rows)


@router.get("/evaluations/{evaluation_id}")
def evaluation_page(request: Request, evaluation_id: str) -> Response:
    tenant = _tenant(request)
    if tenant is None:
        return _login()
    runtime = get_runtime(request)
    row = runtime.evaluations.get(tenant.id, evaluation_id) if len(evaluation_id) <= 64 else None
    if row is None:
        return _page(request, "missing.html.j2", tenant, what=f"evaluation {evaluation_id}")
    images = [(i, json.loads(i.result) if i.result else None) for i in runtime.evaluations.images(row.id)]
    feedback = {f.image.position: f for f in runtime.evaluations.feedback(evaluation_id=row.id)}
    return _page(request, "evaluation.html.j2", tenant, evaluation=row, images=images, feedback=feedback)


def install_dashboard(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(install_submit(_jobs, _tenant))
    app.mount("/static", StaticFiles(directory=str(_folder / "static")), name="static")
