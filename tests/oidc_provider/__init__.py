"""A small OpenID Connect provider for the single sign-on tests: a Django project of its
own around django-oauth-toolkit in OIDC mode, run as a separate process on a free port
(`python -m tests.oidc_provider`, started by harness.py).

Its people live in a JSON file the tests write (and rewrite between sign-ins: a group
taken away): {"ada": {"password": ..., "email": ..., "groups": [...], "teams": [...],
"quirk": null}}. A person's quirk makes the provider misbehave for them alone:
"tampered" (the ID token's payload altered after signing), "wrong_audience" (the token
names another client) and "expired" (the token expired ten minutes ago).
"""
