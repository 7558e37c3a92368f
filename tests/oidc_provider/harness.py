"""Starts the test provider (a separate process) and points thena-admin at it."""

import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.util import process_stop

ROOT = Path(__file__).resolve().parent.parent.parent
CLIENT_ID = "thena-admin-tests"
CLIENT_SECRET = "a-client-secret-for-tests-only"
PASSWORD = "idp-password"
GROUP_MAP = {"support-leads": ["Support managers"], "audit": ["Auditors"]}
TEAM_SCOPE_CLAIM = "thena_teams"
START_TIMEOUT = 60


def person(name: str, *, groups=(), teams=(), quirk: str | None = None, **claims) -> dict:
    return {
        "password": PASSWORD,
        "email": f"{name}@corp.example",
        "given_name": name.title(),
        "family_name": "Tester",
        "groups": list(groups),
        "teams": teams if isinstance(teams, str) else list(teams),
        "quirk": quirk,
        **claims,
    }


@dataclass
class RunningProvider:
    issuer: str
    people_path: Path

    def people_set(self, **people: dict) -> None:
        """Replace the provider's people (read at every request)."""
        tmp = self.people_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(people))
        os.replace(tmp, self.people_path)


@contextmanager
def provider_running(tmp_dir: Path, *, app_urls: list[str]):
    """The provider on a free port, with thena-admin at each of `app_urls` (e.g.
    http://testserver, the live server) registered as a client."""
    people_path = tmp_dir / "people.json"
    people_path.write_text("{}")
    command = [
        sys.executable,
        "-m",
        "tests.oidc_provider",
        "--people",
        str(people_path),
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
    ]
    for url in app_urls:
        command += ["--redirect-uri", f"{url}/accounts/oidc/callback/"]
        command += ["--post-logout-redirect-uri", f"{url}/accounts/login/"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    log = tmp_dir / "provider.log"
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True
    )
    first_line: list[str] = []
    reader = threading.Thread(target=lambda: first_line.append(process.stdout.readline()))
    reader.start()
    reader.join(START_TIMEOUT)
    try:
        if not first_line or not first_line[0].startswith("listening "):
            process_stop(process)
            raise RuntimeError(f"the test provider did not start: {log.read_text()[-3000:]}")
        yield RunningProvider(issuer=first_line[0].split()[1], people_path=people_path)
    finally:
        process_stop(process)


def app_configure(settings, provider: RunningProvider, **overrides) -> None:
    """thena-admin's settings as settings.py makes them from OIDC_* variables naming
    `provider` (tests/test_sso_settings.py checks that parsing)."""
    from thena_admin.settings import origin
    from tickets.sso.provider import provider_reset

    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_CLIENT_ID = CLIENT_ID
    settings.OIDC_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_PROVIDER_NAME = "Test IdP"
    settings.OIDC_GROUP_MAP = GROUP_MAP
    settings.OIDC_TEAM_SCOPE_CLAIM = TEAM_SCOPE_CLAIM
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "tickets.sso.backends.OidcBackend",
    ]
    csp = dict(settings.SECURE_CSP)
    csp["form-action"] = [*csp["form-action"], origin(provider.issuer)]
    settings.SECURE_CSP = csp
    for name, value in overrides.items():
        setattr(settings, name, value)
    provider_reset()
