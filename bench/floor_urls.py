"""The floor under a page: the dashboard's URLs plus two views that make only the Thena
calls a page makes, through the same client and behind the same middleware (the login
included), and render nothing. bench/ticket_list.py and bench/edit_overhead.py serve
this URLconf (`dashboard_start(..., floor=True)`) to show how much of a ratio is left to
the page's own work. Never part of the app.
"""

from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from thena_admin.urls import urlpatterns as app_urlpatterns
from tickets.thena.client import get_client


def search(request):
    """The list's one search call, its parameters as the query string."""
    params = request.GET.dict()
    get_client().search_tickets(params.pop("q"), **params)
    return HttpResponse("ok")


@csrf_exempt
def edit(request, ticket_id: str):
    """An edit's two calls, the re-read and the PATCH, then the same redirect."""
    client = get_client()
    client.get_ticket(ticket_id)
    client.update_ticket(ticket_id, {"title": request.POST["title"]})
    return redirect(f"/tickets/{ticket_id}/")


urlpatterns = [
    *app_urlpatterns,  # first: the pages resolve as they do in the app
    path("bench-floor/search/", search),
    path("bench-floor/edit/<str:ticket_id>/", edit),
]
