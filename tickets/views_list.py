"""The ticket list and its saved views."""

import html
import secrets

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator, slugify
from django.views.decorators.http import require_GET, require_POST

from . import listing
from .forms import SavedViewForm
from .templatetags.moments import ago
from .views import _int, _is_partial, _ticket_urls


def _list_url(query: str) -> str:
    return reverse("tickets:list") + (f"?{query}" if query else "")


# /tickets/
@require_GET
def ticket_list(request: HttpRequest) -> HttpResponse:
    flt = listing.TicketFilter.from_query(request.GET)
    page = max(_int(request.GET.get("page"), 1), 1)
    canonical = flt.query_string(page)
    if not request.htmx and request.GET.urlencode() != canonical:
        # The plain form sends every control, empty or not: one clean URL to share.
        return redirect(_list_url(canonical))
    return _list_page(request, flt, page)


def _escape(value) -> str:
    """Django's escape(), without its lazy-string wrapper."""
    return html.escape(str(value))


def _row(ticket: dict, *, select: bool, url: str) -> SafeString:
    """One row of the list, escaped as the template engine escapes. Written here rather
    than in the template: the engine's work for its dozen cells was a third of a page."""
    ident = ticket.get("ticketIdentifier")
    cell = _escape(ident or "—")
    if url:
        cell = f'<a class="row-link" href="{_escape(url)}">{cell}</a>'
    tick = ""
    if select:
        if url:
            tick = (
                f'<input type="checkbox" name="ticket" value="{_escape(ticket["id"])}" '
                f'form="bulk-select" aria-label="Select {_escape(ident or ticket["id"])}">'
            )
        tick = f'<td class="select">{tick}</td>'
    when = "—"
    if (updated := ticket["updated"]) is not None:
        local = timezone.localtime(updated)
        full = f"{local.year:04d}-{local:%m-%d %H:%M} {local.tzname() or ''}"
        when = (
            f'<time datetime="{_escape(local.isoformat())}" title="{_escape(full)}">'
            f"{_escape(ago(updated))}</time>"
        )
    title = ticket.get("title")
    title = "" if title is None else str(title)
    if len(title) > 120:
        title = Truncator(title).chars(120)
    priority = ticket.get("priority")
    badge = f"priority-{_escape(slugify(priority or ''))}"
    return mark_safe(
        f"<tr>{tick}"
        f'<td class="nowrap" data-label="Ticket">{cell}</td>'
        f'<td class="title" data-label="Title">{_escape(title)}</td>'
        f'<td data-label="Status"><span class="badge">{_escape(ticket.get("status") or "—")}'
        "</span></td>"
        f'<td data-label="Priority"><span class="badge {badge}">'
        f"{_escape(priority or '—')}</span></td>"
        f'<td data-label="Assignee">{_escape(ticket.get("assignedAgent") or "Unassigned")}</td>'
        f'<td data-label="Team">{_escape(ticket.get("teamName") or "—")}</td>'
        f'<td class="nowrap" data-label="Updated">{when}</td>'
        "</tr>"
    )


def _list_page(request, flt, page_number: int, view_form=None, status=200) -> HttpResponse:
    known, finish = listing.ticket_list_start(user=request.user, flt=flt, page=page_number)
    # While Thena searches: all that needs no answer, the page around the table included.
    bulk = request.user.has_perm("tickets.bulk_edit")
    select = bulk and bool(known.filter.team)  # a tick per row, for a bulk edit
    context = {
        "listing": known,
        "bulk": bulk,
        "select": select,
        "views": listing.view_links(request.user, known),
        "view_form": view_form or SavedViewForm(initial={"query": known.filter.query_string()}),
    }
    template = "tickets/ticket_list.html"
    partial = _is_partial(request)
    around = slot = None
    if not partial or request.htmx.target == "ticket-list":
        # A change of team changes what the filters offer: the whole list, form included.
        # The table goes where the slot is: a comment no escaped value can spell.
        slot = mark_safe(f"<!--{secrets.token_hex(16)}-->")
        around = render_to_string(
            template + ("#ticket-list" if partial else ""), {**context, "table_slot": slot}, request
        )
    page = finish()
    if page.beyond_end and not page.error:
        messages.get_messages(request).used = False  # shown by the page redirected to
        return redirect(_list_url(page.last_query))
    url = _ticket_urls()
    context["listing"] = page
    context["rows"] = [_row(t, select=select, url=url(t.get("id"))) for t in page.tickets]
    table = render_to_string(template + "#ticket-table", context, request)
    body = table if around is None else around.replace(slot, table, 1)
    response = HttpResponse(body, status=status)
    if partial:
        # The URL as the list reads it (no empty parameters, nothing it dropped), and no
        # new history entry when nothing changed (the search box left after its search).
        url = _list_url(page.filter.query_string(page.page))
        same = request.htmx.current_url_abs_path == url
        response["HX-Push-Url"] = "false" if same else url
    return response


# /tickets/views/
@require_POST
def saved_view_create(request: HttpRequest) -> HttpResponse:
    form = SavedViewForm(request.POST)
    if form.is_valid():
        try:
            view = listing.saved_view_save(
                user=request.user, name=form.cleaned_data["name"], query=form.cleaned_data["query"]
            )
        except listing.TooManyViews as error:
            form.add_error("name", str(error))
        else:
            messages.success(request, f"Saved the view “{view.name}”.")
            return redirect(_list_url(view.query))
    # The list it was saved from, with the name typed and why it was not kept (focused,
    # so the page opens at it, however long the list).
    form.fields["name"].widget.attrs["autofocus"] = True
    flt = listing.TicketFilter.from_query(QueryDict(request.POST.get("query", "")[:2000]))
    return _list_page(request, flt, 1, view_form=form, status=400)


# /tickets/views/<pk>/delete/
@require_POST
def saved_view_delete(request: HttpRequest, pk: int) -> HttpResponse:
    if listing.saved_view_delete(user=request.user, pk=pk):
        messages.success(request, "The view was deleted.")
    back = listing.TicketFilter.from_query(QueryDict(request.POST.get("back", "")[:2000]))
    return redirect(_list_url(back.query_string()))
