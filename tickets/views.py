from dataclasses import dataclass
from datetime import UTC, timedelta
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseServerError,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.template import loader
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.http import RFC3986_SUBDELIMS
from django.views.decorators.cache import never_cache
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
    require_safe,
)
from django_htmx.http import push_url, trigger_client_event

from . import audit, services
from .audit import RequestMeta, jobs
from .audit.words import drift_numbers
from .converters import TicketIdConverter
from .forms import RESOLVE_PREFIX, RevertForm, TicketUpdateForm
from .models import Action, AuditEntry
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


def _thena_web_url(ticket: dict) -> str:
    """The ticket's address in Thena's web app from settings.THENA_WEB_URL, each value
    URL-quoted whole; empty (no link) when unset or a value it needs is missing."""
    url = settings.THENA_WEB_URL
    for placeholder, key in (("{id}", "id"), ("{identifier}", "ticketIdentifier")):
        if placeholder in url:
            value = ticket.get(key)
            if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
                return ""
            url = url.replace(placeholder, quote(str(value), safe=""))
    return url


def _page(request, edit, form, *, conflict=None, status=200) -> HttpResponse:
    template = DETAIL + ("#ticket-main" if _is_partial(request) else "")
    can_audit = request.user.has_perm("tickets.view_auditentry")
    source = _history_source(request.GET.get("history"))
    history = (
        services.ticket_history_list(user=request.user, ticket_id=edit.ticket_id, source=source)
        if can_audit
        else None
    )
    _show_write_only_seen(form, edit.ticket_id)
    context = {
        "edit": edit,
        "ticket": edit.ticket,
        "thena_web_url": _thena_web_url(edit.ticket),
        "form": form,
        "conflict": conflict,
        "can_edit": request.user.has_perm("tickets.edit_ticket"),
        "history": history,
        "history_source": source,
        "drift": _recent_drift(history),
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


DRIFT_SHOWN = timedelta(days=1)  # how long the ticket page flags a tug of war


def _history_source(value: str | None) -> str:
    return value if value in services.HISTORY_SOURCES else ""


def _recent_drift(history):
    """The latest change made in Thena that overrode a dashboard edit, if recent."""
    for item in history or ():
        if item.external and item.drift_of_number:
            if timezone.now() - item.entry.created_at < DRIFT_SHOWN:
                return item
            return None
    return None


def _show_write_only_seen(form, ticket_id: str) -> None:
    """Under a write-only input (empty: Thena does not return it), the value Thena's
    events last showed, and when. The input stays empty: only what the user types is sent."""
    for seen in services.write_only_seen(ticket_id):
        if seen.field in form.fields and seen.field in form.unreadable:
            when = parse_datetime(seen.value) if isinstance(seen.value, str) else None
            shown = _moment(when) if when else form.display(seen.field, seen.value)
            field = form[seen.field]  # a bound field copies its help text when made
            moment = _moment(seen.seen_at)
            note = (
                f"Empty as of {moment}, from Thena's events."
                if shown == "—"
                else f"As of {moment}, from Thena's events: {shown}."
            )
            field.help_text = field.field.help_text = f"{note} {field.field.help_text or ''}"


def _moment(value) -> str:
    if timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return timezone.localtime(value).strftime("%-d %b %Y, %H:%M")


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
        edit = services.ticket_edit_load(user=request.user, ticket_id=ticket_id)
    except ThenaNotFound:
        # Ids first: a real id costs no search, even one that looks like an identifier.
        return _identifier_redirect(request, ticket_id)
    except ThenaError as error:
        return _load_failed(request, error)
    return _page(request, edit, edit.form())


def _load_failed(request: HttpRequest, error: ThenaError) -> HttpResponse:
    return render(request, DETAIL, {"load_error": error.user_message}, status=502)


def _identifier_redirect(request: HttpRequest, value: str) -> HttpResponse:
    """A ticket identifier (e.g. SUP-12) where the id goes: a redirect to the ticket's
    own URL. No such ticket, one outside the user's teams, or no identifier: a 404."""
    try:
        ticket_id = services.ticket_id_resolve(user=request.user, identifier=value)
    except ThenaNotFound:
        raise Http404("No such ticket.") from None
    except ThenaError as error:
        return _load_failed(request, error)
    url = _ticket_url(ticket_id)
    if not url or ticket_id == value:  # no URL can carry it, or it just answered 404
        raise Http404("No such ticket.")
    return redirect(url)


def _submitted(request: HttpRequest, ticket_id: str) -> services.TicketEdit:
    """The edit as the page showed it, from the posted snapshot (no call to Thena)."""
    edit = services.ticket_edit_load_submitted(
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
        services.ticket_update_deny(
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
            user=request.user,
            edit=seen,
            form=form,
            meta=RequestMeta.of(request),
            intent=services.Intent(reason=form.reason),
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
    return HttpResponse(form[name].as_edit_field())


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
    source = _history_source(request.GET.get("source"))
    if "source" in request.GET and not request.htmx:  # a link followed without JS
        query = f"?history={source}" if source else ""
        return redirect(reverse("tickets:detail", args=[ticket_id]) + query + "#history-panel")
    history = services.ticket_history_list(user=request.user, ticket_id=ticket_id, source=source)
    context = {"ticket": {"id": ticket_id}, "history": history, "history_source": source}
    return render(request, DETAIL + "#history-panel", context)


# /tickets/accounts/?q=
@require_GET
@permission_required("tickets.edit_ticket", raise_exception=True)
def account_options(request: HttpRequest) -> HttpResponse:
    """Accounts for the picker, for editors. Accounts are organisation-wide in Thena, so
    a scoped editor sees the same list as anyone; a user scoped to no team edits nothing
    and gets nothing."""
    if services.team_scope_get(request.user) == frozenset():
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
    report = services.health_check_live()
    return JsonResponse(report, status=200 if report["ok"] else 503)


# -- audit log ---------------------------------------------------------------------------

AUDIT_LIST = "audit/audit_list.html"
CHART_HEIGHT = 100  # SVG units of each day's bar (10 wide)
REASON_SHOWN = 120  # characters of a reason in the list


def _audit_scope(request: HttpRequest) -> frozenset[str] | None:
    """The teams whose audit entries the user may read; None means every team."""
    return services.team_scope_get(request.user)


@dataclass(frozen=True)
class _Bar:
    label: str  # the day and its count, in words: the link's text alternative
    url: str  # the list filtered to that day
    y: int
    height: int
    tick: str  # the date under the axis, on some days only


def _chart(days: list[audit.DayCount], span: audit.ChartSpan, filters: audit.AuditFilter) -> dict:
    """Bar geometry and links for the per-day chart, in whole SVG units (templates never
    compute). Each bar links to the list of its day with the other filters kept."""
    top = max((day.count for day in days), default=0)
    # The day's own range replaces any; the other filters are kept.
    kept = {k: v for k, v in filters.as_params().items() if k not in ("since", "until")}
    here = f"{reverse('audit:list')}?{urlencode(kept)}&" if kept else f"{reverse('audit:list')}?"
    bars = []
    for day in days:
        height = max(1, round(day.count / top * CHART_HEIGHT)) if day.count else 0
        label = f"{day.day:%a} {day.day.day} {day.day:%b %Y}: {day.count} change" + (
            "" if day.count == 1 else "s"
        )
        url = f"{here}since={day.day}&until={day.day}"
        tick = _tick(day.day, len(days), first=day is days[0])
        bars.append(_Bar(label, url, CHART_HEIGHT - height, height, tick))
    return {
        "bars": bars,
        "height": CHART_HEIGHT,
        "top": top,
        "total": sum(day.count for day in days),
        "since": span.since,
        "until": span.until,
        "cut": span.cut,
        "asked": span.asked,
        "shown": len(days),
    }


def _tick(day, count: int, *, first: bool) -> str:
    """The axis label of `day` in a chart of `count` days, or "": every day up to ten
    days, Mondays up to ten weeks, else the first of each month (with its year in
    January and on the first label)."""
    if count <= 10:
        return f"{day.day} {day:%b}"
    if count <= 70:
        return f"{day.day} {day:%b}" if day.weekday() == 0 else ""
    if day.day != 1:
        return ""
    return f"{day:%b %Y}" if first or day.month == 1 else f"{day:%b}"


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
    reason: str = ""  # cut to REASON_SHOWN characters
    revert_of_number: int | None = None
    drift_of_number: int | None = None  # a change in Thena: the dashboard edit it overrode


def _ticket_urls():
    """A function giving a ticket's URL ("" for no ticket, an id that is no text, or one
    no URL can carry: a slash, a control character, too long), with one reverse() for
    every ticket of a page: that cost more than the rest of a list's row."""
    prefix = reverse("tickets:detail", args=["-"]).removesuffix("-/")

    def url(ticket_id) -> str:
        if not isinstance(ticket_id, str) or not TicketIdConverter.pattern.fullmatch(ticket_id):
            return ""
        return f"{prefix}{quote(ticket_id, safe=RFC3986_SUBDELIMS + '~:@')}/"

    return url


def _ticket_url(ticket_id) -> str:
    return _ticket_urls()(ticket_id)


def _rows(entries: list[AuditEntry]) -> list[_Row]:
    rows = []
    reverted, drifts = audit.revert_numbers(entries), drift_numbers(entries)
    entry_url, ticket_url = services.audit_entry_urls(), _ticket_urls()
    for entry in entries:
        local = timezone.localtime(entry.created_at)
        rows.append(
            _Row(
                number=entry.number,
                url=entry_url(entry.number),
                iso=entry.created_at.isoformat(),
                when=f"{local.day} {local:%b %Y, %H:%M:%S}",
                actor=entry.actor_username or "—",
                action=entry.action_label,
                ticket=entry.ticket_identifier or entry.ticket_id or "—",
                ticket_url=ticket_url(entry.ticket_id),
                ticket_title=entry.ticket_title,
                fields=", ".join(entry.field_labels) or "—",
                outcome=entry.current_outcome,
                reason=_cut(entry.reason or "", REASON_SHOWN),
                revert_of_number=reverted.get(entry.revert_of) if entry.revert_of else None,
                drift_of_number=drifts.get(entry.drift_of) if entry.drift_of else None,
            )
        )
    return rows


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line in the table
    return text if len(text) <= limit else text[: limit - 1] + "…"


# /audit/
@require_GET
@permission_required("tickets.view_auditentry", raise_exception=True)
def audit_list(request: HttpRequest) -> HttpResponse:
    form = audit.AuditFilterForm(request.GET)
    partial = _is_partial(request)
    context = {"form": form, "oob": partial}
    scope = _audit_scope(request)
    if form.is_valid():
        filters = form.filters()
        token = request.GET.get("cursor", "")
        cursor = audit.Cursor.decode(token) if token else None
        page = audit.audit_page(filters=filters, cursor=cursor, team_ids=scope)
        params = filters.as_params()
        span = audit.chart_span(filters)
        days = audit.audit_daily_counts(filters=filters, team_ids=scope)
        rows = _rows(page.entries)
        # Each bulk edit on the page, linked once: its entries here, and its own page
        # (none for an id no URL can carry).
        batch_ids = {entry.batch_id for entry in page.entries if entry.batch_id}
        batch_links = {}
        for batch_id in batch_ids | ({filters.batch} if filters.batch else set()):
            try:
                batch_page = reverse("tickets:bulk-batch", kwargs={"batch_id": batch_id})
            except NoReverseMatch:
                batch_page = ""
            batch_links[batch_id] = {
                "id": batch_id,
                "short": batch_id[:8],
                "list_url": f"{request.path}?{urlencode({'batch': batch_id})}",
                "page_url": batch_page,
            }
        context |= {
            "page": page,
            "rows": rows,
            "marked_rows": [
                (row, batch_links.get(entry.batch_id))
                for row, entry in zip(rows, page.entries, strict=True)
            ],
            "batch": audit.queries.batch_summary(filters=filters, team_ids=scope),
            "batch_link": batch_links.get(filters.batch),
            "cursor": cursor,
            "bad_cursor": bool(token) and cursor is None,
            "query": urlencode(params),
            "next_query": urlencode({**params, "cursor": page.next_cursor}),
            "chart": _chart(days, span, filters),
            "actor_names": filters.names(),
        }
    if request.GET.get("batch"):
        # Only the bulk edit filter dropped: also the way out of a bad id (its input is hidden).
        kept = {k: v for k, v in request.GET.items() if v and k not in ("batch", "cursor")}
        context["batch_clear_url"] = f"{request.path}?{urlencode(kept)}" if kept else request.path
    if not partial:
        context["suggestions"] = audit.actor_suggestions(team_ids=scope)
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
    return _audit_detail_page(request, number)


def _audit_detail_page(
    request: HttpRequest,
    number: int,
    *,
    revert_form: RevertForm | None = None,
    revert_error: str = "",
    status: int = 200,
) -> HttpResponse:
    """The entry's page; after a revert posted from it failed, with the reason and the
    user's input (`revert_form`)."""
    try:
        detail = audit.audit_entry_detail(number=number, team_ids=_audit_scope(request))
    except AuditEntry.DoesNotExist:
        raise Http404("No such audit entry.") from None
    context = {
        "detail": detail,
        "entry": detail.entry,
        "ticket_url": _ticket_url(detail.entry.ticket_id),
    }
    context["revert"] = _revert_controls(request, number, revert_form, revert_error)
    return render(request, "audit/audit_detail.html", context, status=status)


def _revert_controls(
    request: HttpRequest, number: int, form: RevertForm | None, error: str
) -> dict | None:
    """The entry page's revert controls, for editors only (the revert view checks again)."""
    if not request.user.has_perm("tickets.edit_ticket"):
        return None
    plan = services.revert_plan(user=request.user, number=number)
    if plan.entry.action != Action.TICKET_UPDATE:
        return None
    return {"plan": plan, "form": form or RevertForm(), "error": error}


# /audit/<number>/revert/
@require_POST
@permission_required("tickets.view_auditentry", raise_exception=True)
def audit_revert(request: HttpRequest, number: int) -> HttpResponse:
    """Revert an entry's whole change (field=all) or one field of it. A field changed in
    Thena since the entry shows the three-way view, and nothing is sent until the user
    has chosen and confirmed (the token and resolve__<name> come back with that)."""
    form = RevertForm(request.POST)
    if not form.is_valid():
        return _audit_detail_page(request, number, revert_form=form)
    try:
        result = services.ticket_revert(
            user=request.user,
            number=number,
            fields=form.names(),
            reason=form.cleaned_data["reason"],
            meta=RequestMeta.of(request),
            choices=form.resolutions(),
            token=form.cleaned_data["token"],
        )
    except AuditEntry.DoesNotExist:
        raise Http404("No such audit entry.") from None
    except services.RevertConflict as conflict:
        return _revert_conflict_page(request, number, form, conflict)
    except services.RevertRefused as refusal:
        return _revert_failed(request, number, form, str(refusal), status=400)
    except services.OutcomeUnknown as unknown:
        return _revert_failed(
            request,
            number,
            form,
            f"Thena did not confirm this revert, and {unknown.reason}. The audit log records "
            f"it as “unknown” (entry #{unknown.entry.number}) until it is settled. Check the "
            "ticket before reverting again.",
        )
    except services.EditBusy:
        return _revert_failed(request, number, form, BUSY)
    except ThenaNotFound:  # gone from Thena, or moved out of the user's teams
        return _revert_failed(
            request,
            number,
            form,
            "This ticket no longer exists in Thena, or is not in your teams now. Nothing was sent.",
            status=404,
        )
    except ThenaError as error:
        return _revert_failed(request, number, form, f"Nothing was reverted. {error.user_message}")
    return _reverted(request, result)


def _revert_failed(request, number: int, form: RevertForm, error: str, status=200) -> HttpResponse:
    return _audit_detail_page(request, number, revert_form=form, revert_error=error, status=status)


def _revert_conflict_page(
    request: HttpRequest, number: int, form: RevertForm, conflict: services.RevertConflict
) -> HttpResponse:
    """The three-way view: what the entry set (original), what Thena holds (theirs), what
    the revert sends (yours), a choice for each, and the confirmation."""
    data = request.POST.copy()
    data["token"] = conflict.token
    for row in conflict.rows:
        data[RESOLVE_PREFIX + row.name] = row.choice
    confirm = RevertForm(data, clashing=[(row.name, row.label) for row in conflict.rows])
    confirm.is_valid()
    shown = TicketUpdateForm(ticket=conflict.fresh, choices=conflict.choices)
    rows = [
        {
            "label": row.label,
            "original": shown.display(row.name, row.original),
            "theirs": shown.display(row.name, row.theirs),
            "yours": shown.display(row.name, row.yours),
            "choice": confirm[RESOLVE_PREFIX + row.name],
        }
        for row in conflict.rows
    ]
    context = {
        "number": number,
        "ticket": conflict.fresh,
        "ticket_url": _ticket_url(conflict.fresh.get("id")),
        "form": confirm,
        "rows": rows,
        "original_heading": f"Original (set by #{number})",
        "yours_heading": f"Yours (before #{number})",
        "also": conflict.also,
        "recorded": conflict.entry,
    }
    return render(request, "audit/audit_revert.html", context)


def _reverted(request: HttpRequest, result: services.RevertResult) -> HttpResponse:
    """Post/redirect/get: the ticket with what was reverted, linked to the new entry."""
    original = result.plan.entry
    here = reverse("audit:detail", args=[original.number])
    if result.entry is None:
        if result.held:
            text = (
                "Nothing was sent: Thena already holds the values from before entry "
                f"#{original.number} ({', '.join(result.held)})."
            )
        else:
            text = "Nothing was sent: you kept Thena's values."
        messages.info(request, text)
        return redirect(here)
    new = reverse("audit:detail", args=[result.entry.number])
    ticket = original.ticket_identifier or original.ticket_id
    messages.success(
        request,
        format_html(
            'Reverted {} on {} to before entry #{}; <a href="{}">entry #{}</a>.',
            ", ".join(result.reverted),
            ticket,
            original.number,
            new,
            result.entry.number,
        ),
    )
    if result.held:
        messages.info(
            request,
            "Already as before the entry, so not sent: " + ", ".join(result.held),
        )
    if result.kept_upstream:
        messages.warning(
            request,
            "Changed in Thena meanwhile and kept as they are: " + ", ".join(result.kept_upstream),
        )
    return redirect(_ticket_url(original.ticket_id) or new)


# /audit/export.csv, /audit/export.jsonl
@require_GET
@permission_required("tickets.view_auditentry", raise_exception=True)
def audit_export(request: HttpRequest, fmt: str) -> HttpResponse:
    """The entries the filters match: streamed when there are few, else written in the
    background (a job page shows the progress, then the file)."""
    form = audit.AuditFilterForm(request.GET)
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        return HttpResponseBadRequest(
            f"Nothing exported: {problems}", content_type="text/plain; charset=utf-8"
        )
    filters, team_ids, meta = form.filters(), _audit_scope(request), RequestMeta.of(request)
    found = audit.export_count(filters, team_ids, limit=settings.EXPORT_BACKGROUND_ROWS + 1)
    if found > settings.EXPORT_BACKGROUND_ROWS:
        job = jobs.export_job_start(
            actor=request.user,
            filters=filters,
            team_ids=team_ids,
            fmt=fmt,
            meta=meta,
            at_least=found,
        )
        return redirect("audit:export-job", job_id=job.pk)
    lines = audit.audit_export(
        actor=request.user, filters=filters, team_ids=team_ids, meta=meta, fmt=fmt
    )
    response = StreamingHttpResponse(lines, content_type=jobs.FORMATS[fmt])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.{fmt}"'
    return response


# /audit/exports/<job_id>/
@require_GET
@permission_required("tickets.view_auditentry", raise_exception=True)
def export_job(request: HttpRequest, job_id) -> HttpResponse:
    job = jobs.export_job_get(user=request.user, job_id=job_id)
    if job is None:
        raise Http404("No such export.")
    template = "audit/export_job.html" + ("#export-progress" if _is_partial(request) else "")
    context = {"job": job, "downloadable": jobs.downloadable(job)}
    return render(request, template, context)


# /audit/exports/<job_id>/download
@require_GET
@permission_required("tickets.view_auditentry", raise_exception=True)
def export_job_download(request: HttpRequest, job_id) -> HttpResponse:
    job = jobs.export_job_get(user=request.user, job_id=job_id)
    if job is None or not jobs.downloadable(job):
        raise Http404("This export's file is not available (not finished, or expired).")
    stamp = timezone.localtime(job.created_at).strftime("%Y%m%d-%H%M%S")
    return FileResponse(
        jobs.storage().open(job.file_name, "rb"),
        as_attachment=True,
        filename=f"audit-log-{stamp}.{job.format}",
        content_type=jobs.FORMATS[job.format],
    )


# -- error pages (handler403, handler404, handler500 in thena_admin/urls.py) --------------


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """403: what happened and who can help. The reason our own code gives ("You may view
    tickets but not edit them.") is shown; an htmx request gets the fragment alone."""
    template = "403.html" + ("#denied" if _wants_fragment(request) else "")
    reason = str(exception) if isinstance(exception, PermissionDenied) else ""
    response = render(request, template, {"reason": reason}, status=403)
    patch_vary_headers(response, ["HX-Request"])
    return response


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404, the same for a missing page and for an entry or ticket outside the user's
    teams, so the page tells nothing about what exists elsewhere."""
    template = "404.html" + ("#not-found" if _wants_fragment(request) else "")
    response = render(request, template, status=404)
    patch_vary_headers(response, ["HX-Request"])
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """500 without the request context or the database (either may be what failed): the
    standalone 500.html, with the request id also sent as X-Request-ID."""
    request_id = getattr(request, "request_id", "") or ""
    try:
        body = loader.get_template("500.html").render({"request_id": request_id})
    except Exception:  # the error page itself must not fail
        body = f"Something went wrong on our side. Request id: {request_id or 'unknown'}."
        return HttpResponseServerError(body, content_type="text/plain; charset=utf-8")
    return HttpResponseServerError(body)


def _wants_fragment(request: HttpRequest) -> bool:
    # Error handlers also run for requests that never reached HtmxMiddleware.
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request
