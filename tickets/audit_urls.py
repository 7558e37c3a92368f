from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    # /audit/
    path("", views.audit_list, name="list"),
    path("export.csv", views.audit_export, {"fmt": "csv"}, name="export"),
    path("export.jsonl", views.audit_export, {"fmt": "jsonl"}, name="export-jsonl"),
    # /audit/exports/<id>/: a large export's progress, then its file
    path("exports/<uuid:job_id>/", views.export_job, name="export-job"),
    path("exports/<uuid:job_id>/download", views.export_job_download, name="export-download"),
    # /audit/<pk>/
    path("<int:number>/", views.audit_detail, name="detail"),
    path("<int:number>/revert/", views.audit_revert, name="revert"),
]
