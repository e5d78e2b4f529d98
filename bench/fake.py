"""How fast is the fake WeCom? It must never be the bottleneck of a sync or a send benchmark.

    .venv/bin/python bench/fake.py [--users 100000 --departments 5000 --seconds 3 --threads 4]

Starts the fake in-process on loopback and prints, per workload, requests/s (and users/s or
deliveries/s) measured with a few client threads, each with its own requests.Session. Every phase
runs for a bounded time. Figures include the client's own cost (requests + JSON decoding), so they
are a lower bound on what the fake can serve.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import resource
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wecom_integration.testing import FakeWeCom  # noqa: E402
from wecom_integration.testing.org import Org, dept_user_json  # noqa: E402

TIMEOUT = 30


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(label: str, seconds: float, threads: int, make_worker, unit: str | None = None) -> None:
    """Run ``threads`` workers for ``seconds``; each worker call returns (requests, units) done."""
    deadline = time.perf_counter() + seconds
    totals = [[0, 0] for _ in range(threads)]
    errors: list[BaseException] = []

    def loop(i: int) -> None:
        session = requests.Session()
        work = make_worker(i, session)
        try:
            while time.perf_counter() < deadline:
                done, units = work()
                totals[i][0] += done
                totals[i][1] += units
        except BaseException as exc:  # report, don't hang the benchmark
            errors.append(exc)
        finally:
            session.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + TIMEOUT)
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{label}: a worker failed: {errors[0]!r}")
    done = sum(t[0] for t in totals)
    units = sum(t[1] for t in totals)
    line = f"{label:<42} {threads} threads {elapsed:5.1f} s  {done:8d} requests  {done / elapsed:9.0f} req/s"
    if unit:
        line += f"  {units / elapsed:11.0f} {unit}/s"
    print(line, flush=True)


def token(fake: FakeWeCom, session: requests.Session, secret: str) -> str:
    answer = session.get(f"{fake.api_base}/cgi-bin/gettoken",
                         params={"corpid": fake.corp_id, "corpsecret": secret}, timeout=TIMEOUT).json()
    return answer["access_token"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--departments", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each workload")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    started = time.perf_counter()
    org = Org.generate(users=args.users, departments=args.departments, seed=args.seed)
    generation = time.perf_counter() - started
    stats = org.stats()
    print(f"{'org generation':<42} {generation:.2f} s  {stats['users']} users,"
          f" {stats['departments']} departments, {stats['memberships']} memberships,"
          f" {stats['external_contacts']} external contacts,"
          f" max depth {stats['max_depth']}  (peak rss {rss_mb():.0f} MB)", flush=True)

    # Where a list_id page's time goes on the server: paging and encoding the JSON.
    started = time.perf_counter()
    rows, _ = org.list_id_page("", 10_000)
    body = dept_user_json(rows).encode()
    encode_ms = (time.perf_counter() - started) * 1000
    print(f"{'one list_id page built + encoded in-process':<42} {encode_ms:.1f} ms"
          f"  ({len(rows)} rows, {len(body) / 1024:.0f} KiB)", flush=True)

    with FakeWeCom(org=org) as fake:
        base = fake.api_base

        def gettoken_worker(i, session):
            params = {"corpid": fake.corp_id, "corpsecret": fake.contact_secret}
            url = f"{base}/cgi-bin/gettoken"

            def work():
                session.get(url, params=params, timeout=TIMEOUT).raise_for_status()
                return 1, 0
            return work

        measure("gettoken", args.seconds, args.threads, gettoken_worker)

        def list_id_worker(i, session):
            access_token = token(fake, session, fake.contact_secret)
            url = f"{base}/cgi-bin/user/list_id"
            state = {"cursor": ""}

            def work():
                page = {"cursor": state["cursor"], "limit": 10_000}
                answer = session.post(url, params={"access_token": access_token}, json=page,
                                      timeout=TIMEOUT).json()
                if answer["errcode"] != 0:
                    raise RuntimeError(answer)
                state["cursor"] = answer["next_cursor"]  # "" at the end starts the next full pass
                return 1, len(answer["dept_user"])
            return work

        measure("user/list_id (limit 10000)", args.seconds, args.threads, list_id_worker, unit="users")

        userids = [u.userid for u in org.users.values()][:20_000]

        def user_get_worker(i, session):
            access_token = token(fake, session, fake.contact_secret)
            url = f"{base}/cgi-bin/user/get"
            rng = random.Random(i)

            def work():
                params = {"access_token": access_token, "userid": rng.choice(userids)}
                answer = session.get(url, params=params, timeout=TIMEOUT).json()
                if answer["errcode"] != 0:
                    raise RuntimeError(answer)
                return 1, 1
            return work

        measure("user/get", args.seconds, args.threads, user_get_worker, unit="users")

        # The same call with a much cheaper client than requests: closer to the fake's own capacity.
        conn = http.client.HTTPConnection(fake.host, fake.port, timeout=TIMEOUT)
        access_token = token(fake, requests.Session(), fake.contact_secret)
        rng = random.Random(7)
        done, deadline, started = 0, time.perf_counter() + args.seconds, time.perf_counter()
        while time.perf_counter() < deadline:
            conn.request("GET", f"/cgi-bin/user/get?access_token={access_token}&userid={rng.choice(userids)}")
            response = conn.getresponse()
            response.read()
            done += 1
        conn.close()
        elapsed = time.perf_counter() - started
        print(f"{'user/get (http.client, keep-alive)':<42} 1 thread  {elapsed:5.1f} s  {done:8d} requests"
              f"  {done / elapsed:9.0f} req/s", flush=True)

        active = [u.userid for u in org.active_users()]
        batch = min(1000, len(active))

        def send_worker(i, session):
            access_token = token(fake, session, fake.secret)
            url = f"{base}/cgi-bin/message/send"
            rng = random.Random(1000 + i)

            def work():
                body = {"touser": "|".join(rng.sample(active, batch)), "msgtype": "text",
                        "agentid": fake.agent_id, "text": {"content": "基准测试 benchmark"}}
                answer = session.post(url, params={"access_token": access_token}, json=body,
                                      timeout=TIMEOUT).json()
                if answer["errcode"] != 0:
                    raise RuntimeError(answer)
                return 1, batch
            return work

        measure(f"message/send ({batch} recipients each)", args.seconds, args.threads, send_worker,
                unit="deliveries")
        print(f"{'deliveries recorded':<42} {fake.stats()['deliveries']}  (peak rss {rss_mb():.0f} MB)",
              flush=True)
        fake.clear_deliveries()


if __name__ == "__main__":
    main()
