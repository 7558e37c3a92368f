"""Single sign-on through the company's identity provider (OpenID Connect).

mozilla-django-oidc runs the browser side of the authorization code flow (state, nonce,
PKCE, the callback's bookkeeping); the rest is ours and split by reason to change:

- provider.py: the only door to the provider (discovery, keys, token, userinfo), httpx;
- tokens.py: the ID token's checks (RS256 signature against the JWKS, issuer, audience,
  expiry, nonce);
- provisioning.py: claims -> the user, their groups and team scope, and the records of
  sign-ins, role changes and refusals;
- backends.py, views.py: the glue to Django's auth and to the library.

Off while OIDC_ISSUER is empty (thena_admin/settings.py, "Single sign-on"): the routes
then send everyone to the login page, and only local accounts sign in.
"""
