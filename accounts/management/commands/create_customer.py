"""`manage.py create_customer --name N --username U --password P [--role owner]`.

Creates the customer when it does not exist and adds the user to it; run again with another
username to add more users to the same customer.
"""
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Customer, Membership
from accounts.services import customer_create, member_add

ACTOR = "cli:create_customer"


class Command(BaseCommand):
    help = "Create a customer (if absent) and a user in it with a role (owner by default)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Customer name (created when absent)")
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--role", default=Membership.Role.OWNER, choices=Membership.Role.values)

    def handle(self, *args, name, username, password, role, **options):
        name, username = name.strip(), username.strip()
        if not name or not username:
            raise CommandError("--name and --username must not be empty")
        user = get_user_model().objects.filter(username=username).select_related("membership__customer").first()
        if user is not None and user.is_staff:
            raise CommandError(f"{username!r} is a platform admin account; use another username")
        membership = getattr(user, "membership", None) if user is not None else None
        if membership is not None and membership.customer.name != name:
            raise CommandError(f"{username!r} already belongs to customer {membership.customer.name!r}")
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("Password refused: " + " ".join(exc.messages)) from None
        with transaction.atomic():
            customer = Customer.objects.filter(name=name).first()
            created = customer is None
            if created:
                customer = customer_create(actor=ACTOR, name=name)
            member_add(actor=ACTOR, customer=customer, username=username, password=password, role=role)
        what = "Created customer" if created else "Customer"
        verb = "updated" if membership is not None else "added"
        self.stdout.write(self.style.SUCCESS(
            f"{what} {customer.name!r} (id {customer.pk}); user {username!r} {verb} as {role}"
        ))
