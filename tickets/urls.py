from django.urls import path

from . import views

app_name = "tickets"

urlpatterns = [
    # /tickets/
    path("", views.ticket_list, name="list"),
    path("accounts/", views.account_options, name="account-options"),
    # /tickets/<ticket_id>/
    path("<str:ticket_id>/", views.ticket_detail, name="detail"),
    path("<str:ticket_id>/validate/", views.ticket_validate, name="validate"),
    path("<str:ticket_id>/history/", views.ticket_history, name="history"),
]
