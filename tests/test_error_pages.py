"""403, 404 and 500 say what happened and what to do, in the app's own pages; htmx
requests get the small fragment, and the 500 page needs neither the request context
nor the database."""

import pytest
from django.test import Client, RequestFactory
from django.urls import include, path
from pytest_django.asserts import assertContains, assertNotContains

from tickets import views

pytestmark = pytest.mark.django_db

NO_ACCESS = "You don\u2019t have access to this page"
ASK = "Ask an administrator for the “Auditors” or “Support managers” role."


def _boom(request):
    raise RuntimeError("the database fell over")


# A URLconf of this module (ROOT_URLCONF below): the app's URLs, one view that fails,
# and the app's error handlers, which Django takes from the root URLconf.
urlpatterns = [path("boom/", _boom), path("", include("thena_admin.urls"))]
handler403 = "tickets.views.permission_denied"
handler404 = "tickets.views.page_not_found"
handler500 = "tickets.views.server_error"


def test_a_viewer_opening_the_audit_log_gets_the_styled_403(viewer_client):
    response = viewer_client.get("/audit/")

    assert response.status_code == 403
    assertContains(response, NO_ACCESS, status_code=403)
    assertContains(response, ASK, status_code=403)
    assertContains(response, "<html", status_code=403)
    assertContains(response, 'href="/tickets/">Back to the tickets', status_code=403)
    assertContains(response, "/static/css/app.css", status_code=403)


def test_an_htmx_request_that_is_refused_gets_the_fragment_alone(viewer_client):
    response = viewer_client.get("/audit/", headers={"HX-Request": "true"})

    assert response.status_code == 403
    assertContains(response, NO_ACCESS, status_code=403)
    assertNotContains(response, "<html", status_code=403)
    assert "HX-Request" in response["Vary"]


@pytest.mark.usefixtures("thena")
def test_a_403_with_a_reason_of_our_own_shows_it(viewer_client, url):
    response = viewer_client.post(url, {"title": "Forged"})

    assertContains(response, "You may view tickets but not edit them.", status_code=403)
    assertContains(response, ASK, status_code=403)


def test_an_unknown_entry_gets_the_styled_404(auditor_client):
    response = auditor_client.get("/audit/999999/")

    assert response.status_code == 404
    assertContains(response, "No such page or entry", status_code=404)
    assertContains(response, "it may be outside your teams", status_code=404)
    assertContains(response, 'href="/audit/">The audit log', status_code=404)
    assertContains(response, "<html", status_code=404)


def test_an_unknown_address_gets_the_404_page_signed_in_or_not(client, viewer_client):
    for who in (client, viewer_client):
        response = who.get("/no/such/page/")
        assert response.status_code == 404
        assertContains(response, "No such page or entry", status_code=404)
    # The audit log's link only for those who may read it.
    assertNotContains(viewer_client.get("/no/such/page/"), "The audit log", status_code=404)


def test_an_htmx_404_is_the_fragment_alone(auditor_client):
    response = auditor_client.get("/audit/999999/", headers={"HX-Request": "true"})
    assertContains(response, "No such page or entry", status_code=404)
    assertNotContains(response, "<html", status_code=404)


def test_a_server_error_gets_the_styled_500_with_the_request_id(settings, auditor):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    client.force_login(auditor)

    response = client.get("/boom/", headers={"X-Request-ID": "req-7f3a"})

    assert response.status_code == 500
    assert response["X-Request-ID"] == "req-7f3a"
    assertContains(response, "Something went wrong on our side", status_code=500)
    assertContains(response, '<code class="request-id">req-7f3a</code>', status_code=500)
    assertContains(response, "/static/css/app.css", status_code=500)
    assertNotContains(response, "the database fell over", status_code=500)


def test_the_500_page_needs_no_database_and_no_request_context(django_assert_num_queries):
    request = RequestFactory().get("/anything/")
    request.request_id = "req-1"
    with django_assert_num_queries(0):
        response = views.server_error(request)

    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content
    assert b"req-1" in response.content


def test_the_500_page_without_a_request_id_still_renders():
    response = views.server_error(RequestFactory().get("/"))
    assert b"Something went wrong on our side" in response.content
    assert b"request id" not in response.content
