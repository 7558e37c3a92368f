import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import RequestFactory


@pytest.mark.django_db
def test_seed_demo_creates_users_once_and_prints_credentials(capsys):
    call_command("seed_demo", force=True)
    first = capsys.readouterr().out
    assert "manager" in first and "thena-manager-demo" in first
    request = RequestFactory().post("/accounts/login/")
    assert authenticate(request, username="manager", password="thena-manager-demo")
    manager = get_user_model().objects.get(username="manager")
    assert manager.has_perm("tickets.edit_ticket")
    assert manager.has_perm("tickets.view_auditentry")
    auditor = get_user_model().objects.get(username="auditor")
    assert not auditor.has_perm("tickets.edit_ticket")
    assert auditor.has_perm("tickets.view_auditentry")
    assert get_user_model().objects.get(username="admin").is_superuser

    call_command("seed_demo", force=True)
    again = capsys.readouterr().out
    assert "exists" in again
    assert get_user_model().objects.filter(username="manager").count() == 1
