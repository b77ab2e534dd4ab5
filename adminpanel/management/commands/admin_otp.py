"""`manage.py admin_otp enrol USERNAME [--replace] [--name NAME]`: give a staff user the TOTP device the Django
admin asks for (the second factor after the password), and print its enrolment once.

`manage.py admin_otp list [USERNAME]` shows who has which devices; `manage.py admin_otp remove USERNAME` deletes a
user's devices (the user then cannot open /admin/ until enrolled again).
"""
import getpass
from base64 import b32encode

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from adminpanel.services import admin_otp_enrol
from autogen_platform.errors import ApplicationError
from core.services import audit_record


def enrolment_lines(device) -> list[str]:
    secret = b32encode(device.bin_key).decode()
    return [
        f"  otpauth URI (add to an authenticator app, or make a QR code of it): {device.config_url}",
        f"  or type the secret: {secret}  (TOTP, SHA1, 6 digits, 30 s)",
    ]


class Command(BaseCommand):
    help = "Enrol, list or remove the TOTP devices (admin site second factor) of staff users."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        enrol = sub.add_parser("enrol", help="create a TOTP device and print its otpauth:// URI once")
        enrol.add_argument("username")
        enrol.add_argument("--name", default="authenticator")
        enrol.add_argument("--replace", action="store_true", help="delete the user's other TOTP devices first")
        listing = sub.add_parser("list", help="staff users and their TOTP devices")
        listing.add_argument("username", nargs="?")
        remove = sub.add_parser("remove", help="delete every TOTP device of a user")
        remove.add_argument("username")

    def handle(self, *args, action, **options):
        from django_otp.plugins.otp_totp.models import TOTPDevice

        actor = f"cli:{getpass.getuser()}"
        users = get_user_model().objects
        if action == "list":
            staff = users.filter(is_staff=True)
            if options.get("username"):
                staff = staff.filter(username=options["username"])
            for user in staff.order_by("username"):
                names = [d.name for d in TOTPDevice.objects.filter(user=user, confirmed=True)]
                self.stdout.write(f"{user.username}: {', '.join(names) if names else 'no device (cannot open /admin/)'}")
            return
        user = users.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}")
        if action == "remove":
            count, _ = TOTPDevice.objects.filter(user=user).delete()
            audit_record(actor=actor, action="admin.otp_remove", target=f"user:{user.username}",
                         details={"devices": count})
            self.stdout.write(f"removed {count} device(s) of {user.username}")
            return
        try:
            device = admin_otp_enrol(actor=actor, user=user, name=options["name"], replace=options["replace"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"TOTP device {device.name!r} enrolled for {user.username} (shown only now):")
        for line in enrolment_lines(device):
            self.stdout.write(line)
