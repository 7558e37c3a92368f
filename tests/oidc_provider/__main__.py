"""`python -m tests.oidc_provider --people FILE --redirect-uri URI ...`: makes a new
database, registers the client, prints `listening <issuer>` and serves until stopped
(`make demo-sso` runs it on a fixed port, the tests on a free one)."""

import argparse
import os
import shutil
import signal
import sys
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--people", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--redirect-uri", action="append", default=[])
    parser.add_argument("--post-logout-redirect-uri", action="append", default=[])
    args = parser.parse_args()

    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadedWSGIServer(("127.0.0.1", args.port), QuietHandler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}/o"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    workdir = tempfile.mkdtemp(prefix="oidc-provider-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tests.oidc_provider.settings",
        OIDC_PROVIDER_DB=os.path.join(workdir, "db.sqlite3"),
        OIDC_PROVIDER_ISSUER=issuer,
        OIDC_PROVIDER_PEOPLE=args.people,
        OIDC_PROVIDER_KEY=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )

    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", run_syncdb=True, verbosity=0)
    Application.objects.create(
        name="thena-admin",
        client_id=args.client_id,
        client_secret=args.client_secret,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=" ".join(args.redirect_uri),
        post_logout_redirect_uris=" ".join(args.post_logout_redirect_uri),
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    server.set_app(get_wsgi_application())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening {issuer}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
