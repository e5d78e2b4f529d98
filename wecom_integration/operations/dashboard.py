"""The figures of a tenant's dashboard: the last sync, who is bound, who waits, what WeCom sent in the
last day, and what went wrong and still needs someone.

Everything is counted in the database (a fixed number of queries whatever the tenant's size); the admin
renders it (``tenants/admin.py`` and ``tenants/templates/admin/tenants/tenant/_dashboard.html``).
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from wecom_integration.directory import sync
from wecom_integration.directory.sync import BINDABLE_STATUSES
from wecom_integration.extension import get_adapter
from wecom_integration.models import Binding, CallbackEvent, MessageLog, SyncRun, WeComConfig, WeComUser

#: Hours in the callbacks chart.
CHART_HOURS = 24
#: How far back a failed message or sync still asks for attention.
ATTENTION_DAYS = 7
#: How many of each kind of problem are listed (all are counted).
ATTENTION_LIMIT = 5
#: Sync outcomes that settle an earlier failure of the same kind.
SETTLED_STATUSES = (SyncRun.Status.REVIEW, SyncRun.Status.CONFIRMED, SyncRun.Status.SUCCEEDED)


@dataclass(frozen=True)
class HourBucket:
    """Callbacks received in one hour (``start`` is aware, in the current time zone)."""

    start: datetime
    total: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Problems:
    """One kind of error needing attention: how many, and the newest few."""

    count: int = 0
    recent: tuple = ()


@dataclass
class Dashboard:
    tenant: object
    config: WeComConfig | None
    last_sync: SyncRun | None
    review_run: SyncRun | None
    members: int
    bound: int
    unbound: int
    pending: int
    hours: list[HourBucket]
    failed_events: Problems
    failed_syncs: Problems
    failed_messages: Problems
    # Syncs no worker has started within WECOM["QUEUED_JOB_STALE_AFTER"]: (run, queue name) (issue 24).
    waiting_for_worker: list = field(default_factory=list)
    generated_at: datetime = field(default_factory=timezone.now)

    @property
    def callbacks_total(self) -> int:
        return sum(bucket.total for bucket in self.hours)

    @property
    def callbacks_failed(self) -> int:
        return sum(bucket.failed for bucket in self.hours)

    @property
    def attention_count(self) -> int:
        return self.failed_events.count + self.failed_syncs.count + self.failed_messages.count


def tenant_dashboard(tenant, now=None) -> Dashboard:
    """Every figure of ``tenant``'s dashboard as of ``now`` (default: the current time)."""
    now = now or timezone.now()
    config = WeComConfig.objects.filter(tenant=tenant).only("pk", "tenant", "corp_id", "agent_id", "enabled").first()
    runs = SyncRun.objects.filter(tenant=tenant).select_related("started_by")
    members = WeComUser.objects.filter(tenant=tenant, removed=False, status__in=BINDABLE_STATUSES)
    member_counts = members.aggregate(
        total=Count("pk"),
        unbound=Count("pk", filter=~Q(Exists(Binding.objects.filter(wecom_user=OuterRef("pk"))))),
    )
    return Dashboard(
        tenant=tenant,
        config=config,
        last_sync=runs.filter(kind=SyncRun.Kind.CONTACTS).order_by("-created_at", "-id").first(),
        review_run=runs.filter(kind=SyncRun.Kind.CONTACTS, status=SyncRun.Status.REVIEW)
        .order_by("-created_at", "-id")
        .first(),
        members=member_counts["total"],
        bound=Binding.objects.filter(tenant=tenant, is_active=True).count(),
        unbound=member_counts["unbound"],
        pending=get_adapter().pending_membership_count(tenant),
        hours=callbacks_per_hour(tenant, now),
        failed_events=failed_events(tenant),
        failed_syncs=failed_syncs(tenant, now),
        failed_messages=failed_messages(tenant, now),
        waiting_for_worker=[(run, sync.queue_of(run)) for run in runs.filter(sync.waiting_for_worker_q(now))],
    )


def hour_starts(now, hours=CHART_HOURS) -> list[datetime]:
    """The starts of the last ``hours`` whole hours in the current time zone, oldest first; the last
    one is the hour ``now`` is in."""
    current = timezone.localtime(now).replace(minute=0, second=0, microsecond=0)
    # Step in UTC so that a daylight-saving change neither repeats nor skips an hour.
    current_utc = current.astimezone(UTC)
    zone = timezone.get_current_timezone()
    return [(current_utc - timedelta(hours=back)).astimezone(zone) for back in range(hours - 1, -1, -1)]


def callbacks_per_hour(tenant, now, hours=CHART_HOURS) -> list[HourBucket]:
    """The tenant's callbacks per hour over the last ``hours`` hours (every hour present, zero or not)."""
    starts = hour_starts(now, hours)
    rows = (
        CallbackEvent.objects.filter(tenant=tenant, received_at__gte=starts[0])
        .annotate(hour=TruncHour("received_at"))
        .values("hour")
        .annotate(total=Count("pk"), failed=Count("pk", filter=Q(status=CallbackEvent.Status.FAILED)))
        .order_by()
    )
    counted = {row["hour"].astimezone(UTC): row for row in rows}
    buckets = []
    for start in starts:
        row = counted.get(start.astimezone(UTC))
        buckets.append(HourBucket(start, row["total"], row["failed"]) if row else HourBucket(start))
    return buckets


def failed_events(tenant) -> Problems:
    """Callbacks whose handling failed (each can be retried from the event log)."""
    events = CallbackEvent.objects.filter(tenant=tenant, status=CallbackEvent.Status.FAILED)
    recent = tuple(
        events.order_by("-received_at", "-id").only(
            "pk", "tenant", "kind", "msg_type", "event", "change_type", "subject", "error", "attempts",
            "received_at"
        )[:ATTENTION_LIMIT]
    )
    return Problems(events.count() if len(recent) == ATTENTION_LIMIT else len(recent), recent)


def failed_syncs(tenant, now) -> Problems:
    """Syncs that failed in the last ``ATTENTION_DAYS`` days and that no later sync of the same kind
    has made good."""
    since = now - timedelta(days=ATTENTION_DAYS)
    settled_later = SyncRun.objects.filter(
        tenant=tenant, kind=OuterRef("kind"), status__in=SETTLED_STATUSES, created_at__gt=OuterRef("created_at")
    )
    runs = SyncRun.objects.filter(tenant=tenant, status=SyncRun.Status.FAILED, created_at__gte=since).exclude(
        Exists(settled_later)
    )
    recent = tuple(runs.order_by("-created_at", "-id")[:ATTENTION_LIMIT])
    return Problems(runs.count() if len(recent) == ATTENTION_LIMIT else len(recent), recent)


def failed_messages(tenant, now) -> Problems:
    """Messages of the last ``ATTENTION_DAYS`` days that WeCom refused, or delivered to only some."""
    since = now - timedelta(days=ATTENTION_DAYS)
    logs = MessageLog.objects.filter(
        tenant=tenant,
        status__in=(MessageLog.Status.FAILED, MessageLog.Status.PARTIAL),
        created_at__gte=since,
    )
    recent = tuple(logs.order_by("-created_at", "-id").defer("content")[:ATTENTION_LIMIT])
    return Problems(logs.count() if len(recent) == ATTENTION_LIMIT else len(recent), recent)


@dataclass(frozen=True)
class Bar:
    """One bar of the chart, in SVG user units."""

    bucket: HourBucket
    x: float
    y: float
    width: float
    height: float
    failed_y: float
    failed_height: float
    label: str
    tick: bool


@dataclass(frozen=True)
class Chart:
    bars: tuple
    width: int
    height: int
    plot_height: int
    peak: int


def bar_chart(hours, *, bar_width=18, gap=4, plot_height=80, axis_height=18) -> Chart:
    """The geometry of the callbacks chart: one bar per hour, scaled to the busiest hour, the failed
    part of each bar drawn over its bottom; a tick label every six hours."""
    peak = max((bucket.total for bucket in hours), default=0)
    bars = []
    for index, bucket in enumerate(hours):
        height = 0.0 if not peak else round(plot_height * bucket.total / peak, 1)
        if bucket.total and height < 2:
            height = 2.0  # one callback among thousands still shows
        failed_height = 0.0 if not bucket.total else round(height * bucket.failed / bucket.total, 1)
        if bucket.failed and failed_height < 2:
            failed_height = min(2.0, height)
        x = index * (bar_width + gap)
        bars.append(
            Bar(
                bucket=bucket,
                x=x,
                y=round(plot_height - height, 1),
                width=bar_width,
                height=height,
                failed_y=round(plot_height - failed_height, 1),
                failed_height=failed_height,
                label=f"{bucket.start:%H}:00",
                tick=index % 6 == 0 or index == len(hours) - 1,
            )
        )
    width = max(0, len(hours) * (bar_width + gap) - gap)
    return Chart(tuple(bars), width, plot_height + axis_height, plot_height, peak)
