from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import services


@require_GET
def ticket_list(request: HttpRequest) -> HttpResponse:
    return render(request, "tickets/ticket_list.html", {})


@never_cache
@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report = services.health_check()
    return JsonResponse(report, status=200 if report["ok"] else 503)
