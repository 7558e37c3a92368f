"""The ticket list and its saved views."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from . import listing
from .forms import SavedViewForm
from .views import _int, _is_partial, _ticket_url


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


def _list_page(request, flt, page_number: int, view_form=None, status=200) -> HttpResponse:
    page = listing.ticket_list(user=request.user, flt=flt, page=page_number)
    if page.beyond_end and not page.error:
        return redirect(_list_url(page.last_query))
    # A ticket whose id no URL can carry (a slash, empty, too long) is listed unlinked.
    rows = [{**ticket, "url": _ticket_url(ticket.get("id"))} for ticket in page.tickets]
    context = {
        "listing": page,
        "rows": rows,
        "views": listing.view_links(request.user, page),
        "view_form": view_form or SavedViewForm(initial={"query": page.filter.query_string()}),
    }
    template = "tickets/ticket_list.html"
    if not _is_partial(request):
        return render(request, template, context, status=status)
    # A change of team changes what the filters offer: the whole list, form included.
    template += "#ticket-list" if request.htmx.target == "ticket-list" else "#ticket-table"
    response = render(request, template, context, status=status)
    # The URL as the list reads it (no empty parameters, nothing it dropped), and no new
    # history entry when nothing changed (the search box left after its own search).
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
