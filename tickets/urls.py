from django.urls import path, register_converter

from . import views, views_bulk, views_list
from .converters import TicketIdConverter

register_converter(TicketIdConverter, "ticket_id")

app_name = "tickets"

urlpatterns = [
    # /tickets/
    path("", views_list.ticket_list, name="list"),
    path("views/", views_list.saved_view_create, name="view-create"),
    path("views/<int:pk>/delete/", views_list.saved_view_delete, name="view-delete"),
    path("accounts/", views.account_options, name="account-options"),
    # /tickets/bulk/
    path("bulk/", views_bulk.bulk_edit, name="bulk"),
    path("bulk/<uuid:batch_id>/", views_bulk.bulk_batch, name="bulk-batch"),
    path("bulk/<uuid:batch_id>.csv", views_bulk.bulk_batch_csv, name="bulk-batch-csv"),
    # /tickets/<ticket_id>/
    path("<ticket_id:ticket_id>/", views.ticket_detail, name="detail"),
    path("<ticket_id:ticket_id>/validate/", views.ticket_validate, name="validate"),
    path("<ticket_id:ticket_id>/history/", views.ticket_history, name="history"),
]
