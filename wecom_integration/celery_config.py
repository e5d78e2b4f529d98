"""What the app needs from the host's Celery: queues, routes and the beat schedule, ready to merge.

The app's tasks are shared tasks (``@shared_task``): they register in whatever Celery app the host
creates, under names that never change (``wecom_integration.tasks.*``). A host merges these into its own
configuration, e.g. in its Django settings read with ``namespace="CELERY"``::

    from wecom_integration.celery_config import BEAT_SCHEDULE, TASK_ROUTES

    CELERY_TASK_ROUTES = {**TASK_ROUTES, **MY_ROUTES}
    CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE, **MY_SCHEDULE}

or all at once with ``celery_settings()``. Queues:

``callbacks``  WeCom's callbacks, answered within WeCom's 5 s and handled here; a bulk sync must never
               delay them, so they get their own queue and their own worker (docs/deploy.md).
``bulk``       contact and customer syncs and message sends: long, rate-limited work.
(default)      the host's default queue (``task_default_queue``, Celery's is "celery"): the beat jobs,
               the periodic sync dispatcher and the sweep that re-queues lost callbacks.

A worker must consume every queue routed here (``celery -A hostproj worker -Q callbacks,bulk,celery``, or
one worker per queue); a queue nobody consumes leaves callbacks stored but never handled.
"""

CALLBACKS_QUEUE = "callbacks"
BULK_QUEUE = "bulk"

TASK_ROUTES = {
    "wecom_integration.tasks.handle_callback_event": {"queue": CALLBACKS_QUEUE},
    "wecom_integration.tasks.handle_callback_events": {"queue": CALLBACKS_QUEUE},
    "wecom_integration.tasks.run_contact_sync": {"queue": BULK_QUEUE},
    "wecom_integration.tasks.run_customer_sync": {"queue": BULK_QUEUE},
    "wecom_integration.tasks.send_message": {"queue": BULK_QUEUE},
    "wecom_integration.tasks.reconcile_approvals": {"queue": BULK_QUEUE},
    "wecom_integration.tasks.submit_membership_approvals": {"queue": BULK_QUEUE},
    "wecom_integration.tasks.purge_old_rows": {"queue": BULK_QUEUE},
}

# The per-tenant periodic sync dispatcher (each tenant opts in and sets its interval) and the sweep that
# re-queues callback events whose task was lost (e.g. a broker restarted without persistence).
BEAT_SCHEDULE = {
    "wecom-periodic-sync": {"task": "wecom_integration.tasks.periodic_sync", "schedule": 300},
    "wecom-requeue-stale-events": {
        "task": "wecom_integration.tasks.requeue_stale_callback_events",
        "schedule": 60,
    },
    # Approvals whose sys_approval_change callback was lost still reach their final state.
    "wecom-reconcile-approvals": {"task": "wecom_integration.tasks.reconcile_approvals", "schedule": 3600},
    # Rows past WECOM["RETENTION"], deleted in small batches (docs/deploy.md, "Retention").
    "wecom-purge-old-rows": {"task": "wecom_integration.tasks.purge_old_rows", "schedule": 86400},
}

# What the handlers are written for: a task is acknowledged after it ran, so a killed worker's task is
# delivered again (handlers are idempotent), and nothing reads task results.
RECOMMENDED = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
}


def celery_settings(prefix="CELERY_"):
    """The routes, the beat schedule and the recommended options as Django settings names (upper case
    with ``prefix``, for ``config_from_object("django.conf:settings", namespace="CELERY")``), or as
    Celery's own lower-case names with ``prefix=None`` (for ``app.conf.update``). Copies: merge freely."""
    values = {
        "task_routes": {name: dict(route) for name, route in TASK_ROUTES.items()},
        "beat_schedule": {name: dict(entry) for name, entry in BEAT_SCHEDULE.items()},
        **RECOMMENDED,
    }
    if prefix is None:
        return values
    return {prefix + name.upper(): value for name, value in values.items()}


def queue_for(task_name, app=None):
    """The name of the queue the current Celery app sends ``task_name`` to: its own routes as the host
    configured them (any form Celery accepts), else this module's ``TASK_ROUTES``, else the default queue.
    The admin shows it next to work no worker has picked up (issue 24)."""
    from celery import current_app
    from celery.app.routes import Router, prepare

    app = app or current_app
    try:
        # A router built from the routes as configured now (Celery caches the one it sends with).
        router = Router(prepare(app.conf.task_routes), app.amqp.queues, create_missing=True, app=app)
        queue = router.route({}, task_name, (), {}).get("queue")
        name = getattr(queue, "name", queue)
    except Exception:  # a broken route in the host's configuration must not break the admin page
        name = None
    if name:
        return str(name)
    route = TASK_ROUTES.get(task_name) or {}
    return route.get("queue") or app.conf.task_default_queue or "celery"
