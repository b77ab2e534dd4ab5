"""`manage.py killswitch on|off [--customer ID] [--reason R]`: the operator's killswitch from a shell."""
import getpass

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Customer
from adminpanel import selectors, services


class Command(BaseCommand):
    help = "Engage (on) or release (off) the killswitch, globally or for one customer; without arguments, show it."

    def add_arguments(self, parser):
        parser.add_argument("state", nargs="?", choices=["on", "off", "status"], default="status")
        parser.add_argument("--customer", help="customer id (or name); omitted: the global switch")
        parser.add_argument("--reason", default="", help="why; shown to the affected customers and audited")

    def handle(self, *args, state, customer, reason, **options):
        target = None
        if customer:
            target = Customer.objects.filter(pk=int(customer)).first() if customer.isdigit() else None
            target = target or Customer.objects.filter(name=customer).first()
            if target is None:
                raise CommandError(f"No customer {customer!r}")
        scope = "global" if target is None else f"customer {target.pk} ({target.name})"
        if state != "status":
            services.killswitch_set(actor=f"cli:{getpass.getuser()}", engaged=state == "on", customer=target,
                                    reason=reason)
        current = selectors.killswitch_state(target.pk if target else None)
        word = "ENGAGED" if current["engaged"] else "released"
        self.stdout.write(f"killswitch {scope}: {word}" + (f" ({current['reason']})" if current["reason"] else ""))
        if target is None and state == "status":
            for item in selectors.killswitch_overview()["customers"]:
                self.stdout.write(f"killswitch customer {item['customer']}: ENGAGED ({item['reason']})")
