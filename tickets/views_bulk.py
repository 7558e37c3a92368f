"""Bulk edit pages (tickets/bulk.py): choose the values, preview, confirm, then watch the
batch run, cancel it, and download its results."""

import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from . import bulk
from .audit import RequestMeta
from .forms import BulkEditForm
from .listing import TicketFilter
from .models import Batch
from .thena.errors import ThenaError


def _selection(data) -> bulk.Selection:
    ids = tuple(dict.fromkeys(v.strip()[:64] for v in data.getlist("ticket") if v.strip()))
    return bulk.Selection(
        team_id=data.get("team", "").strip()[:64],
        filter=TicketFilter.from_query(data),
        ticket_ids=ids,
        everything=data.get("all") == "1",
    )


def _list_url(team_id: str) -> str:
    """The ticket list of the team (a team id as any text: it goes through urlencode)."""
    query = urlencode({"team": team_id}) if team_id else ""
    return reverse("tickets:list") + (f"?{query}" if query else "")


# /tickets/bulk/
@require_http_methods(["GET", "POST"])
@permission_required("tickets.bulk_edit", raise_exception=True)
def bulk_edit(request: HttpRequest) -> HttpResponse:
    """GET: the values to set for the selection in the query string. POST: a preview
    (a draft batch), then its page; on any problem the form again, with the input."""
    selection = _selection(request.POST if request.method == "POST" else request.GET)
    back = _list_url(selection.team_id)
    if not selection.everything and not selection.ticket_ids:
        messages.error(request, "Tick the tickets to edit, or choose “all matching”.")
        return redirect(back)
    try:
        team, choices = bulk.bulk_team_load(user=request.user, team_id=selection.team_id)
    except bulk.BulkRefused as refused:
        messages.error(request, str(refused))
        return redirect(back)
    required = settings.THENA_REQUIRE_REASON
    if request.method == "POST":
        form = BulkEditForm(request.POST, choices=choices, reason_required=required)
        if form.is_valid():
            try:
                batch = bulk.batch_preview_create(
                    user=request.user,
                    selection=selection,
                    values=form.values(),
                    value_labels=form.value_labels(),
                    reason=form.reason,
                    meta=RequestMeta.of(request),
                )
            except bulk.BulkRefused as refused:
                form.add_error(None, str(refused))
            except ThenaError as error:
                form.add_error(None, f"The tickets could not be read: {error.user_message}")
            else:
                return redirect("tickets:bulk-batch", batch_id=batch.pk)
        status = 400
    else:
        form, status = BulkEditForm(choices=choices, reason_required=required), 200
    context = {
        "form": form,
        "selection": selection,
        "team": team,
        "back": back,
        "max_tickets": settings.BULK_MAX_TICKETS,
    }
    return render(request, "tickets/bulk_edit.html", context, status=status)


def _batch(request: HttpRequest, batch_id: uuid.UUID) -> Batch:
    try:
        return bulk.batch_get(user=request.user, batch_id=batch_id)
    except Batch.DoesNotExist:
        raise Http404("No such bulk edit.") from None


# /tickets/bulk/<batch_id>/
@require_http_methods(["GET", "POST"])
def bulk_batch(request: HttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    batch = _batch(request, batch_id)
    if request.method == "POST":
        return _act(request, batch)
    if batch.state == Batch.State.DRAFT:
        try:
            _, choices = bulk.bulk_team_load(user=request.user, team_id=batch.team_id)
        except bulk.BulkRefused as refused:
            messages.error(request, str(refused))
            return redirect("tickets:list")
        rows = bulk.batch_preview(batch, choices)
        context = {
            "batch": batch,
            "settings": bulk.batch_settings(batch, choices),
            "rows": rows,
            "changing": sum(not row.no_change for row in rows),
        }
        return render(request, "tickets/bulk_preview.html", context)
    partial = request.htmx and not request.htmx.history_restore_request
    if not partial:
        bulk.resume_if_stalled(batch)
    progress = bulk.batch_progress(batch)
    finished = batch.state not in bulk.ACTIVE
    context = {
        "batch": batch,
        "progress": progress,
        "finished": finished,
        "results": list(bulk.batch_results(batch)) if finished else [],
        "can_cancel": not finished and request.user.has_perm("tickets.bulk_edit"),
    }
    template = "tickets/bulk_batch.html"
    if partial:
        template += "#batch-progress"
    else:
        context["settings"] = bulk.batch_settings(batch, bulk.team_choices_load(batch.team_id))
    return render(request, template, context)


def _act(request: HttpRequest, batch: Batch) -> HttpResponse:
    action = request.POST.get("action")
    page = redirect("tickets:bulk-batch", batch_id=batch.pk)
    if action == "confirm":
        bulk.batch_confirm(user=request.user, batch=batch)
        messages.success(request, "Bulk edit started. You can leave this page: it carries on.")
    elif action == "cancel":
        bulk.batch_cancel(user=request.user, batch=batch)
        messages.info(request, "Cancelling: nothing more is sent after the tickets in flight.")
    elif action == "discard":
        bulk.batch_discard(user=request.user, batch=batch)
        messages.info(request, "Preview discarded: nothing was sent.")
        return redirect(_list_url(batch.team_id))
    else:
        messages.error(request, "Unknown action.")
    return page


# /tickets/bulk/<batch_id>.csv
@require_GET
def bulk_batch_csv(request: HttpRequest, batch_id: uuid.UUID) -> StreamingHttpResponse:
    batch = _batch(request, batch_id)
    if batch.state == Batch.State.DRAFT:
        raise Http404("A preview has no results.")
    response = StreamingHttpResponse(
        bulk.batch_results_csv(batch), content_type="text/csv; charset=utf-8"
    )
    name = f"bulk-edit-{batch.created_at:%Y%m%d-%H%M}-{str(batch.pk)[:8]}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
