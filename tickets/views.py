from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import services


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _is_partial(request: HttpRequest) -> bool:
    """An htmx swap wants the fragment; a history restore needs the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


# /tickets/
@require_GET
def ticket_list(request: HttpRequest) -> HttpResponse:
    listing = services.ticket_list(
        team_id=request.GET.get("team", "").strip(),
        query=request.GET.get("q", "").strip()[:200],
        page=_int(request.GET.get("page"), 1),
    )
    template = "tickets/ticket_list.html" + ("#ticket-table" if _is_partial(request) else "")
    return render(request, template, {"listing": listing})


# /healthz
@never_cache
@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report = services.health_check()
    return JsonResponse(report, status=200 if report["ok"] else 503)
