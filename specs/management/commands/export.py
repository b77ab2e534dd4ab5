"""`manage.py export --customer NAME [-o FILE]`: a customer's models, agents and teams as a spec that
`manage.py apply` reads back as `no changes` (provider keys are never exported)."""
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Customer
from specs.export import spec_dump_yaml, spec_export


class Command(BaseCommand):
    help = "Write a customer's models, agents and teams as a YAML spec (keys are never exported)."

    def add_arguments(self, parser):
        parser.add_argument("--customer", required=True, help="customer name (or id)")
        parser.add_argument("-o", "--output", help="file to write; default: standard output")

    def handle(self, *args, customer, output, **options):
        target = Customer.objects.filter(name=customer).first()
        if target is None and customer.isdigit():
            target = Customer.objects.filter(pk=int(customer)).first()
        if target is None:
            raise CommandError(f"unknown customer {customer!r}")
        text = spec_dump_yaml(spec_export(target))
        if not output or output == "-":
            self.stdout.write(text, ending="")
            return
        try:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc}") from None
        self.stderr.write(f"wrote {output}")
