import pytest
from django.contrib.auth import backends
from django.contrib.auth.models import AnonymousUser, Group, Permission, User

from tickets.backends import ModelBackend


def _fresh(user):
    return User.objects.get(pk=user.pk)  # no permission cache


@pytest.fixture
def user(db):
    user = User.objects.create_user("pat")
    user.user_permissions.add(Permission.objects.get(codename="edit_ticket"))
    group = Group.objects.create(name="Readers")
    group.permissions.add(Permission.objects.get(codename="view_auditentry"))
    # In both ways: counted once.
    group.permissions.add(Permission.objects.get(codename="edit_ticket"))
    user.groups.add(group)
    Group.objects.create(name="Other").permissions.add(Permission.objects.get(codename="bulk_edit"))
    return user


def test_the_same_permissions_as_djangos_backend_in_one_query(user, django_assert_num_queries):
    expected = backends.ModelBackend().get_all_permissions(_fresh(user))
    assert expected == {"tickets.edit_ticket", "tickets.view_auditentry"}
    fresh = _fresh(user)
    with django_assert_num_queries(1):
        assert ModelBackend().get_all_permissions(fresh) == expected
        assert fresh.has_perm("tickets.view_auditentry")  # memoised on the user
        assert not fresh.has_perm("tickets.bulk_edit")


def test_no_permissions_for_the_inactive_the_anonymous_or_an_object(user):
    backend = ModelBackend()
    assert backend.get_all_permissions(_fresh(user), obj=object()) == set()
    assert backend.get_all_permissions(AnonymousUser()) == set()
    user.is_active = False
    user.save()
    assert backend.get_all_permissions(_fresh(user)) == set()


def test_a_superuser_has_every_permission(db):
    admin = User.objects.create_superuser("root", password="x")
    assert ModelBackend().get_all_permissions(admin) == backends.ModelBackend().get_all_permissions(
        _fresh(admin)
    )
    assert "tickets.bulk_edit" in ModelBackend().get_all_permissions(_fresh(admin))
