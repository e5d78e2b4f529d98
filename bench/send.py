"""One text to 10,000 bound users through the fake WeCom, the way a host project sends it.

    .venv/bin/python bench/send.py [--users 10000] [--repeats 3]

Creates a throw-away test database (SQLite in memory, or the test database of DATABASE_URL), a fake
WeCom with more than --users active members, and --users local users bound to them (bulk_create). Then
``services.messaging.send(tenant, Message.text(...), usernames=[...])`` is timed end to end: username
resolution through the bindings, the log, the message/send calls and WeCom's answers. Prints the
message/send calls (target: ceil(users / 1000), i.e. 10), the wall time and the deliveries the fake
recorded (target: --users). Prints figures only; asserts nothing.
"""

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import override_settings, setup_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from wecom_integration.testing import FakeWeCom

        # The generated corp has some disabled or quit members; make it big enough for --users active ones.
        with FakeWeCom(users=int(args.users * 1.2) + 100, departments=200, seed=42) as fake:
            with override_settings(WECOM={"API_BASE": fake.api_base}):
                run(fake, args)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(fake, args):
    from django.contrib.auth import get_user_model

    from tenants.models import Membership, Tenant
    from wecom_integration.client import client_for
    from wecom_integration.messaging.services import Message, send
    from wecom_integration.models import Binding, MessageLog, WeComConfig, WeComUser

    User = get_user_model()
    userids = [user.userid for user in fake.org.active_users()][: args.users]
    if len(userids) < args.users:
        sys.exit(f"the fake corp has only {len(userids)} active members")

    started = time.perf_counter()
    tenant = Tenant.objects.create(code="bench", name="Bench")
    config = WeComConfig.objects.create(tenant=tenant, corp_id=fake.corp_id, agent_id=fake.agent_id, secret=fake.secret)
    users = User.objects.bulk_create(
        [User(username=f"bench_{userid}", password="!") for userid in userids], batch_size=2000
    )
    Membership.objects.bulk_create(
        [Membership(user=user, tenant=tenant, status=Membership.Status.ACTIVE) for user in users], batch_size=2000
    )
    wecom_users = WeComUser.objects.bulk_create(
        [WeComUser(tenant=tenant, userid=userid, name=userid) for userid in userids], batch_size=2000
    )
    Binding.objects.bulk_create(
        [Binding(tenant=tenant, user=user, wecom_user=wu) for user, wu in zip(users, wecom_users, strict=True)],
        batch_size=2000,
    )
    setup_seconds = time.perf_counter() - started
    usernames = [user.username for user in users]

    print(f"setup: {len(usernames)} users, memberships, WeCom users and bindings in {setup_seconds:.2f} s")
    print(f"target: {math.ceil(len(usernames) / 1000)} message/send calls, {len(usernames)} deliveries")
    walls = []
    for repeat in range(1, args.repeats + 1):
        # A cold token each time (the gettoken round trip is part of a first send); only this corp's
        # token is dropped, never the rest of a shared cache.
        client_for(config, "app").invalidate_token()
        fake.clear_deliveries()
        fake.reset_stats()
        started = time.perf_counter()
        log = send(tenant, Message.text(f"基准测试 #{repeat}"), usernames=usernames, source="bench")
        wall = time.perf_counter() - started
        walls.append(wall)
        print(
            f"run {repeat}: message/send calls {fake.calls['message/send']}, "
            f"wall {wall:.3f} s, deliveries {len(fake.deliveries)}, "
            f"status {log.status}, invalid {len(log.invalid_users)}"
        )
    print(f"median wall: {statistics.median(walls):.3f} s over {len(walls)} runs")
    print(f"message log rows: {MessageLog.objects.filter(tenant=tenant).count()}")


if __name__ == "__main__":
    main()
