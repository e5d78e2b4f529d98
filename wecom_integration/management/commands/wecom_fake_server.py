"""Run the fake WeCom in the foreground, for the demo, manual testing and benchmarks.

The first stdout line is one JSON object with the API base and credentials, so a parent process can
read it and configure a tenant; then the server runs until SIGINT or SIGTERM.
"""

from django.core.management.base import BaseCommand, CommandError

from wecom_integration.testing import FakeWeCom
from wecom_integration.testing.server import serve_until_signalled


class Command(BaseCommand):
    help = "Serve a fake WeCom API (and callback sender) on loopback until interrupted."
    # The fake needs no database or settings; don't let unrelated checks block it.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8890)
        parser.add_argument("--users", type=int, default=200)
        parser.add_argument("--departments", type=int, default=20)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--token-ttl", type=int, default=7200)
        parser.add_argument("--corp-id", default=None)
        parser.add_argument("--restricted", action="store_true",
                            help="Apply the 2022 restrictions (user/list and department/list answer 48009).")
        parser.add_argument("--rate-limits", action="store_true",
                            help="Enforce WeCom's per-API limits (10,000/min, 150,000/h).")

    def handle(self, *args, **options):
        if options["departments"] < 1 or options["users"] < 0:
            raise CommandError("--departments must be at least 1 and --users not negative")
        fake = FakeWeCom(users=options["users"], departments=options["departments"], seed=options["seed"],
                         token_ttl=options["token_ttl"], restricted=options["restricted"],
                         rate_limits=options["rate_limits"], corp_id=options["corp_id"])
        try:
            fake.start(host=options["host"], port=options["port"])
        except OSError as exc:
            raise CommandError(f"cannot listen on {options['host']}:{options['port']}: {exc}") from exc

        def announce(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        serve_until_signalled(fake, announce)
