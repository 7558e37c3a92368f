from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    # /audit/
    path("", views.audit_list, name="list"),
    path("export.csv", views.audit_export, name="export"),
    # /audit/<pk>/
    path("<int:number>/", views.audit_detail, name="detail"),
    path("<int:number>/revert/", views.audit_revert, name="revert"),
]
