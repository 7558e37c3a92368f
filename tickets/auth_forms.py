"""Login forms whose username is checked before anyone authenticates it.

Django's AuthenticationForm sets the username's max_length after the field was built, so
only the widget's maxlength says it: a forged 10,000-character username reaches
authenticate(), and django-axes then records the failure in a varchar(255) column, which
PostgreSQL refuses (a 500). Here the length (the user model's column, 150) is a field
error, as a NUL is already, and nothing is authenticated or recorded.
"""

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator


def _bound_username(form: AuthenticationForm) -> None:
    field = form.fields["username"]
    limit = field.max_length
    if limit and not any(isinstance(v, MaxLengthValidator) for v in field.validators):
        field.validators = [*field.validators, MaxLengthValidator(limit)]


class LoginForm(AuthenticationForm):
    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        _bound_username(self)


class AdminLoginForm(AdminAuthenticationForm):
    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        _bound_username(self)
