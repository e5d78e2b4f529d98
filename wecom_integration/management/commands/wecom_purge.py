"""`manage.py wecom_purge`: delete rows past WECOM["RETENTION"] (what the daily beat task does), per tenant,
in bounded batches; ``--dry-run`` only counts them."""

from django.core.management.base import BaseCommand

from wecom_integration.operations import retention


class Command(BaseCommand):
    help = 'Delete callback events, attempts, message logs, inbox messages and audit records past WECOM["RETENTION"].'

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--tenant", type=int, action="append", help="Only this tenant (repeatable).")
        parser.add_argument("--batch-size", type=int, help="Rows per DELETE (default: the setting, 5000).")
        parser.add_argument("--pause", type=float, default=0.0, help="Seconds to sleep between batches.")

    def handle(self, *args, **options):
        settings = retention.policy()
        days = {target.label: target.days for target in retention.targets(settings)}
        results = retention.purge(tenant_ids=options["tenant"], batch_size=options["batch_size"],
                                  dry_run=options["dry_run"], pause=options["pause"])
        verb = "would delete" if options["dry_run"] else "deleted"
        width = max(len(label) for label in days) if days else 10
        self.stdout.write(f"{'tenant':>8}  {'rows':<{width}}  {'kept days':>9}  {verb:>12}")
        total = 0
        for tenant_id, counts in results.items():
            for label, rows in counts.items():
                total += rows
                self.stdout.write(f"{tenant_id:>8}  {label:<{width}}  {days[label]:>9}  {rows:>12}")
        if options["dry_run"]:
            self.stdout.write(self.style.SUCCESS(f"{total} row(s) due in {len(results)} tenant(s); nothing deleted."))
        else:
            self.stdout.write(self.style.SUCCESS(f"{total} row(s) deleted in {len(results)} tenant(s)."))
