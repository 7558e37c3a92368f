from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

# (username, password, group, is_superuser). Demo only: these passwords are public.
DEMO_USERS = [
    ("admin", "thena-admin-demo", None, True),
    ("manager", "thena-manager-demo", "Support managers", False),
    ("auditor", "thena-auditor-demo", "Auditors", False),
    ("viewer", "thena-viewer-demo", None, False),
]


class Command(BaseCommand):
    help = (
        "Create the demo users (skipping those that exist) and print their credentials. "
        "Their passwords are public and one is a superuser, so it runs only with "
        "DJANGO_DEBUG=true unless --force is given."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="run with DJANGO_DEBUG off too (a demo deployment, tests): the demo "
            "passwords are public, so never on a site with real users",
        )

    def handle(self, *args, force: bool, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo makes users with public passwords (a superuser among them), so "
                "it runs only with DJANGO_DEBUG=true; add --force for a demo deployment."
            )
        User = get_user_model()
        rows = []
        for username, password, group_name, is_superuser in DEMO_USERS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={
                    "email": f"{username}@demo.invalid",
                    "is_staff": is_superuser,
                    "is_superuser": is_superuser,
                },
            )
            if created:
                user.set_password(password)
                user.save()
            if group_name:
                user.groups.add(Group.objects.get_or_create(name=group_name)[0])
            role = group_name or ("superuser" if is_superuser else "view only")
            rows.append((username, password, role, created))
        self.stdout.write("Demo users (log in at http://127.0.0.1:8000/accounts/login/):")
        for username, password, role, created in rows:
            state = "created" if created else "exists, password not reset"
            self.stdout.write(f"  {username:<9} {password:<20} {role:<17} {state}")
