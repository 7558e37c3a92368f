from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
    require_safe,
)
from django_htmx.http import push_url, trigger_client_event

from . import audit, services
from .audit import RequestMeta
from .forms import TicketUpdateForm
from .models import AuditEntry
from .thena.errors import ThenaError, ThenaNotFound, ThenaValidationError

DETAIL = "tickets/ticket_detail.html"


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
        user=request.user,
        team_id=request.GET.get("team", "").strip(),
        query=request.GET.get("q", "").strip()[:200],
        page=_int(request.GET.get("page"), 1),
    )
    # A ticket whose id no URL can carry (a slash, empty, too long) is listed unlinked.
    rows = [{**ticket, "url": _ticket_url(ticket.get("id"))} for ticket in listing.tickets]
    template = "tickets/ticket_list.html" + ("#ticket-table" if _is_partial(request) else "")
    return render(request, template, {"listing": listing, "rows": rows})


def _load(request: HttpRequest, ticket_id: str) -> services.TicketEdit:
    try:
        return services.ticket_edit_load(user=request.user, ticket_id=ticket_id)
    except ThenaNotFound:
        raise Http404("No such ticket.") from None


def _check_scope(request: HttpRequest, ticket_id: str, *, fresh: bool = False) -> None:
    """404 unless the ticket is in the user's teams; `fresh` asks Thena rather than the
    cache (services.ticket_check_scope)."""
    try:
        services.ticket_check_scope(user=request.user, ticket_id=ticket_id, fresh=fresh)
    except ThenaNotFound:
        raise Http404("No such ticket.") from None


def _page(request, edit, form, *, conflict=None, status=200) -> HttpResponse:
    template = DETAIL + ("#ticket-main" if _is_partial(request) else "")
    can_audit = request.user.has_perm("tickets.view_auditentry")
    context = {
        "edit": edit,
        "ticket": edit.ticket,
        "form": form,
        "conflict": conflict,
        "can_edit": request.user.has_perm("tickets.edit_ticket"),
        "history": (
            services.ticket_history(user=request.user, ticket_id=edit.ticket_id)
            if can_audit
            else None
        ),
    }
    if conflict:
        # Write-only values cannot be compared, so no conflict on them can be seen.
        context["unprotected"] = [
            form.label(name) for name in form.edited_inputs if name in form.unreadable
        ]
        context["conflict_rows"] = [
            {
                "label": field.label,
                "original": form.display(field.name, field.original),
                "theirs": form.display(field.name, field.theirs),
                "yours": form.display(field.name, field.yours),
                "choice": form[f"resolve__{field.name}"],
            }
            for field in conflict.fields
        ]
    return render(request, template, context, status=status)


def _add_upstream_errors(form: TicketUpdateForm, error: ThenaValidationError) -> None:
    for name, problems in error.field_errors.items():
        target = name if name in form.fields else None
        for problem in problems:
            form.add_error(target, f"Thena says: {problem}")
    if not error.field_errors:
        form.add_error(None, error.user_message)


BUSY = (
    "Someone else is saving this ticket right now and it took too long. Nothing was sent: "
    "save again in a moment."
)


# /tickets/<ticket_id>/
@require_http_methods(["GET", "POST"])
def ticket_detail(request: HttpRequest, ticket_id: str) -> HttpResponse:
    if request.method == "POST":
        return _ticket_submit(request, ticket_id)
    try:
        edit = _load(request, ticket_id)
    except ThenaError as error:
        return render(request, DETAIL, {"load_error": error.user_message}, status=502)
    return _page(request, edit, edit.form())


def _submitted(request: HttpRequest, ticket_id: str) -> services.TicketEdit:
    """The edit as the page showed it, from the posted snapshot (no call to Thena)."""
    edit = services.ticket_edit_submitted(
        user=request.user,
        ticket_id=ticket_id,
        token=request.POST.get("snapshot", ""),
        account_id=request.POST.get("accountId", "")[:64],
    )
    if edit is None:
        raise Http404("No such ticket.")
    return edit


def _ticket_submit(request: HttpRequest, ticket_id: str) -> HttpResponse:
    if not request.user.has_perm("tickets.edit_ticket"):
        services.ticket_update_denied(
            user=request.user, ticket_id=ticket_id, meta=RequestMeta.of(request)
        )
        raise PermissionDenied("You may view tickets but not edit them.")
    try:
        seen = _submitted(request, ticket_id)
    except services.SnapshotError as problem:
        return _reloaded(request, ticket_id, str(problem))
    form = seen.form(request.POST)
    if not form.is_valid():
        return _page(request, seen, form)
    try:
        result = services.ticket_update(
            user=request.user, edit=seen, form=form, meta=RequestMeta.of(request)
        )
    except services.Conflict as conflict:
        edit = services.TicketEdit(ticket=conflict.fresh, choices=seen.choices)
        originals = {field.name: field.original for field in conflict.fields}
        form = TicketUpdateForm.after_conflict(form, conflict.fresh, originals)
        return _logged(_page(request, edit, form, conflict=conflict))
    except services.OutcomeUnknown as unknown:
        form.add_error(
            None,
            f"Thena did not confirm this save, and {unknown.reason}. The audit log records it as "
            "“unknown” until it is settled. Check the ticket before saving again; your "
            "input is below.",
        )
        return _logged(_page(request, seen, form))
    except services.EditBusy:
        form.add_error(None, BUSY)
        return _page(request, seen, form)
    except services.OutOfScope:
        raise Http404("No such ticket.") from None
    except ThenaValidationError as error:
        _add_upstream_errors(form, error)
        return _logged(_page(request, seen, form))
    except ThenaError as error:
        form.add_error(None, f"Nothing was saved. {error.user_message}")
        return _logged(_page(request, seen, form))

    if result.nothing_changed:
        messages.info(request, "Nothing changed, so nothing was sent to Thena.")
    else:
        messages.success(request, f"Saved {len(result.sent)} change(s) to Thena.")
        unread = [services.field_label(n) for n in result.sent if n in form.unreadable]
        if unread:
            messages.info(
                request,
                "Thena does not return " + ", ".join(unread) + ", so the form shows it empty "
                "again; the audit log keeps what you set.",
            )
    if result.kept_upstream:
        messages.warning(
            request,
            "Changed in Thena meanwhile and kept as they are: " + ", ".join(result.kept_upstream),
        )
    if not _is_partial(request):
        return redirect("tickets:detail", ticket_id=ticket_id)
    edit = services.TicketEdit(ticket=result.ticket, choices=seen.choices)
    response = _page(request, edit, edit.form())
    return _logged(response) if result.sent else response


def _reloaded(request, ticket_id: str, problem: str) -> HttpResponse:
    """A post whose snapshot cannot be trusted: the ticket as it is now, and why."""
    try:
        edit = _load(request, ticket_id)
    except ThenaError as error:
        return render(request, DETAIL, {"load_error": error.user_message}, status=502)
    messages.error(request, f"Nothing was saved. {problem}")
    # htmx swaps only 2xx answers, and this page must reach the user.
    return _page(request, edit, edit.form(), status=200 if _is_partial(request) else 400)


def _logged(response: HttpResponse) -> HttpResponse:
    """Tell the page's history panel that the audit log has a new entry."""
    return trigger_client_event(response, "ticket-updated")


# /tickets/<ticket_id>/validate/?field=<name>
@require_POST
@permission_required("tickets.edit_ticket", raise_exception=True)
def ticket_validate(request: HttpRequest, ticket_id: str) -> HttpResponse:
    """Inline validation when the user leaves a field: the same form, no network (the
    ticket's values come from the signed snapshot, the choices from the cache)."""
    _check_scope(request, ticket_id)
    try:
        edit = _submitted(request, ticket_id)
    except services.SnapshotError:
        return HttpResponse(status=204)  # stale or forged form: the real submit says so
    form = edit.form(request.POST)
    name = request.GET.get("field", "")
    if name not in form.fields:
        return HttpResponse(status=204)
    form.is_valid()
    return render(request, DETAIL + "#form-field", {"field": form[name]})


# /tickets/<ticket_id>/history/
@require_GET
@permission_required("tickets.view_auditentry", raise_exception=True)
def ticket_history(request: HttpRequest, ticket_id: str) -> HttpResponse:
    """The history panel again (after a save). For a scoped user the ticket's team is
    read from Thena, not the cache: one GET after a save, and a ticket moved out of their
    teams answers 404 at once. When Thena cannot say, the panel stays as it was (htmx
    swaps only 2xx answers)."""
    try:
        _check_scope(request, ticket_id, fresh=True)
    except ThenaError as error:
        return HttpResponse(
            error.user_message, status=502, content_type="text/plain; charset=utf-8"
        )
    history = services.ticket_history(user=request.user, ticket_id=ticket_id)
    return render(
        request, DETAIL + "#history-panel", {"ticket": {"id": ticket_id}, "history": history}
    )


# /tickets/accounts/?q=
@require_GET
@permission_required("tickets.edit_ticket", raise_exception=True)
def account_options(request: HttpRequest) -> HttpResponse:
    """Accounts for the picker, for editors. Accounts are organisation-wide in Thena, so
    a scoped editor sees the same list as anyone; a user scoped to no team edits nothing
    and gets nothing."""
    if services.user_team_scope(request.user) == frozenset():
        raise PermissionDenied("Your account is not allowed to see any team.")
    selected = request.GET.get("accountId", "")[:64]
    try:
        options = services.account_search(request.GET.get("q", ""), keep=selected)
    except ThenaError as error:
        options, problem = [], error.user_message
    else:
        problem = ""
    return render(
        request,
        "tickets/account_options.html",
        {"options": options, "selected": selected, "problem": problem},
    )


# /healthz and /healthz/live: served by tickets.middleware.HealthCheckMiddleware before
# any other middleware (so any Host, no session, no redirect), and routed here as well.
@never_cache
@login_not_required
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The database and Thena as last probed; 503 only when the database is down."""
    report = services.health_check()
    return JsonResponse(report, status=200 if report["ok"] else 503)


@never_cache
@login_not_required
@require_safe
def healthz_live(request: HttpRequest) -> JsonResponse:
    """The process and its database, never Thena: for liveness probes."""
    report = services.health_live()
    return JsonResponse(report, status=200 if report["ok"] else 503)


# -- audit log ---------------------------------------------------------------------------

AUDIT_LIST = "audit/audit_list.html"
CHART_HEIGHT = 100  # SVG units; each day is 10 wide


def _audit_scope(request: HttpRequest) -> frozenset[str] | None:
    """The teams whose audit entries the user may read; None means every team."""
    return services.user_team_scope(request.user)


@dataclass(frozen=True)
class _Bar:
    label: str
    x: int
    y: int
    height: int


def _chart(days: list[audit.DayCount]) -> dict:
    """Bar geometry for the per-day chart, in whole SVG units (templates never compute)."""
    top = max((day.count for day in days), default=0)
    bars = []
    for index, day in enumerate(days):
        height = max(1, round(day.count / top * CHART_HEIGHT)) if day.count else 0
        label = f"{day.day:%a} {day.day.day} {day.day:%b}: {day.count}"
        bars.append(_Bar(label, index * 10 + 1, CHART_HEIGHT - height, height))
    return {
        "bars": bars,
        "width": len(days) * 10,
        "height": CHART_HEIGHT,
        "top": top,
        "total": sum(day.count for day in days),
        "since": days[0].day if days else None,
        "until": days[-1].day if days else None,
    }


@dataclass(frozen=True)
class _Row:
    """One line of the audit list, formatted here once: fifty rows of template filters
    and {% url %} tags cost more than the queries behind them."""

    number: int
    url: str
    iso: str
    when: str  # in the user's time zone
    actor: str
    action: str
    ticket: str
    ticket_url: str
    ticket_title: str
    fields: str
    outcome: str


def _ticket_url(ticket_id) -> str:
    if not isinstance(ticket_id, str) or not ticket_id:
        return ""  # no ticket (audit.export), or an upstream id that is no text
    try:
        return reverse("tickets:detail", args=[ticket_id])
    except NoReverseMatch:  # an id no URL can carry (a slash, a control character, too long)
        return ""


def _rows(entries: list[AuditEntry]) -> list[_Row]:
    rows = []
    for entry in entries:
        local = timezone.localtime(entry.created_at)
        rows.append(
            _Row(
                number=entry.number,
                url=reverse("audit:detail", args=[entry.number]),
                iso=entry.created_at.isoformat(),
                when=f"{local.day} {local:%b %Y, %H:%M:%S}",
                actor=entry.actor_username or "—",
                action=entry.action,
                ticket=entry.ticket_identifier or entry.ticket_id or "—",
                ticket_url=_ticket_url(entry.ticket_id),
                ticket_title=entry.ticket_title,
                fields=", ".join(entry.field_labels) or "—",
                outcome=entry.current_outcome,
            )
        )
    return rows


# /audit/
@require_GET
@permission_required("tickets.view_auditentry", raise_exception=True)
def audit_list(request: HttpRequest) -> HttpResponse:
    form = audit.AuditFilterForm(request.GET)
    partial = _is_partial(request)
    context = {"form": form, "oob": partial}
    if form.is_valid():
        filters, scope = form.filters(), _audit_scope(request)
        token = request.GET.get("cursor", "")
        cursor = audit.Cursor.decode(token) if token else None
        page = audit.audit_page(filters=filters, cursor=cursor, team_ids=scope)
        params = filters.as_params()
        context |= {
            "page": page,
            "rows": _rows(page.entries),
            "cursor": cursor,
            "bad_cursor": bool(token) and cursor is None,
            "query": urlencode(params),
            "next_query": urlencode({**params, "cursor": page.next_cursor}),
            "chart": _chart(audit.audit_daily_counts(filters=filters, team_ids=scope)),
        }
    response = render(request, AUDIT_LIST + ("#audit-results" if partial else ""), context)
    patch_vary_headers(response, ["HX-Request"])
    if partial and form.is_valid():
        # The form sends every field, empty or not; the address bar gets the short form.
        here = urlencode({**params, "cursor": token} if cursor else params)
        push_url(response, f"{request.path}?{here}" if here else request.path)
    return response


# /audit/<number>/
@require_GET
@permission_required("tickets.view_auditentry", raise_exception=True)
def audit_detail(request: HttpRequest, number: int) -> HttpResponse:
    try:
        detail = audit.audit_entry_detail(number=number, team_ids=_audit_scope(request))
    except AuditEntry.DoesNotExist:
        raise Http404("No such audit entry.") from None
    context = {
        "detail": detail,
        "entry": detail.entry,
        "ticket_url": _ticket_url(detail.entry.ticket_id),
    }
    return render(request, "audit/audit_detail.html", context)


# /audit/export.csv
@require_GET
@permission_required("tickets.view_auditentry", raise_exception=True)
def audit_export(request: HttpRequest) -> HttpResponse:
    form = audit.AuditFilterForm(request.GET)
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        return HttpResponseBadRequest(
            f"Nothing exported: {problems}", content_type="text/plain; charset=utf-8"
        )
    lines = audit.audit_export(
        actor=request.user,
        filters=form.filters(),
        team_ids=_audit_scope(request),
        meta=RequestMeta.of(request),
    )
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
    return response
