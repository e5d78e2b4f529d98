"""The host's adapter: every membership question answered from its own Seat model (issue 24)."""

from wecom_integration import tenancy
from wecom_integration.login.adapter import DefaultWeComAdapter

from .models import Seat

TO_SEAT = {tenancy.ACTIVE: "on", tenancy.PENDING: "waiting", tenancy.INACTIVE: "gone", tenancy.REJECTED: "gone"}
FROM_SEAT = {"on": tenancy.ACTIVE, "waiting": tenancy.PENDING, "gone": tenancy.INACTIVE}


class OrgAdapter(DefaultWeComAdapter):
    def admin_tenant_ids(self, user):
        seats = Seat.objects.filter(user=user, manager=True, state="on")
        return set(seats.values_list("organization_id", flat=True))

    def member_user_ids(self, tenant, statuses=(tenancy.ACTIVE,)):
        states = {TO_SEAT[status] for status in statuses}
        return Seat.objects.filter(organization=tenant, state__in=states).values("user_id")

    def membership_statuses(self, tenant, user_ids):
        seats = Seat.objects.filter(organization=tenant, user_id__in=list(user_ids))
        return {user_id: FROM_SEAT[state] for user_id, state in seats.values_list("user_id", "state")}

    def set_memberships(self, tenant, statuses):
        existing = {s.user_id: s for s in Seat.objects.filter(organization=tenant, user_id__in=list(statuses))}
        new = [Seat(organization=tenant, user_id=uid, state=TO_SEAT[st]) for uid, st in statuses.items()
               if uid not in existing]
        changed = []
        for uid, seat in existing.items():
            if seat.state != TO_SEAT[statuses[uid]]:
                seat.state = TO_SEAT[statuses[uid]]
                changed.append(seat)
        Seat.objects.bulk_create(new)
        Seat.objects.bulk_update(changed, ["state"])
        return len(new) + len(changed)

    def deactivate_memberships(self, tenant_id, user_ids):
        seats = Seat.objects.filter(organization_id=tenant_id, user_id__in=list(user_ids), state="on")
        return seats.update(state="gone")

    def membership_role(self, user, tenant):
        seat = Seat.objects.filter(user=user, organization=tenant).first()
        return None if seat is None else ("manager" if seat.manager else "seat")

    def pending_membership_count(self, tenant):
        return Seat.objects.filter(organization=tenant, state="waiting").count()

    def make_tenant_admin(self, user, tenant):
        Seat.objects.update_or_create(user=user, organization=tenant, defaults={"manager": True, "state": "on"})

    def tenant_code(self, tenant):
        return tenant.slug
