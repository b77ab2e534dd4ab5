"""`manage.py apply -f FILE [--dry-run] [--prune]`: a declarative spec applied from a shell (see docs/specs.md)."""
import getpass
import os
import sys

from django.core.management.base import BaseCommand, CommandError

from autogen_platform.errors import ApplicationError
from specs.apply import spec_apply
from specs.reader import spec_customer, spec_load


class Command(BaseCommand):
    help = ("Apply a declarative spec (YAML or JSON) of a customer's models, agents and teams: prints the plan, "
            "one line per object, then carries it out in one transaction.")

    def add_arguments(self, parser):
        parser.add_argument("-f", "--file", required=True, help="the spec file; `-` reads standard input")
        parser.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
        parser.add_argument("--prune", action="store_true",
                            help="also delete the customer's models, agents and teams the spec does not name")

    def handle(self, *args, file, dry_run, prune, **options):
        try:
            if file == "-":
                text = sys.stdin.read()
            else:
                with open(file, encoding="utf-8") as handle:
                    text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            spec = spec_load(text)
            customer = spec_customer(spec)
            result = spec_apply(actor=f"cli:{getpass.getuser()}", customer=customer, spec=spec,
                                      dry_run=dry_run, prune=prune, environ=os.environ)
        except ApplicationError as exc:
            raise CommandError(_error_text(exc)) from None
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        for line in result.lines():
            self.stdout.write(line)
        if dry_run:
            self.stdout.write("dry run: nothing was written")


def _error_text(exc: ApplicationError) -> str:
    """The message, then every path of a validation error on its own line."""
    lines = [exc.message]
    if exc.code == "validation_error" and len(exc.details) > 1:
        lines += [f"  {path}: {message}" for path, messages in exc.details.items() for message in messages]
    return "\n".join(lines)
