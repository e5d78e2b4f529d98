"""The one seam through which services queue Celery work: by task name, never by importing a task.

Tasks call services; services never import tasks (that would tie each room's services to Celery's
modules and close an import circle). A service queues ``delay("wecom_integration.tasks.send_message",
log_id)``; the task module registers that name. Looking the task up on the current app keeps the host's
Celery app, its routes and eager mode in charge.
"""

from __future__ import annotations

from celery import current_app


def task(name: str):
    """The registered task called ``name`` on the current Celery app (KeyError if none is)."""
    return current_app.tasks[name]


def delay(name: str, *args, **kwargs):
    """Queue task ``name`` with these arguments, as ``task.delay`` would (eagerly when Celery is eager)."""
    return task(name).delay(*args, **kwargs)


def send(name: str, args: tuple, *, argsrepr: str):
    """Queue task ``name`` with positional ``args``, its message's ``argsrepr`` header given.

    Celery writes a ``saferepr`` of the arguments into every message for monitors (flower, ``celery
    events``); for a list of a hundred ids that repr cost a third of the publish. A caller that knows a
    shorter true description gives it here.
    """
    return task(name).apply_async(args, argsrepr=argsrepr)


def is_eager() -> bool:
    """Whether Celery runs tasks in the caller's process (the embedded default: no broker)."""
    return bool(current_app.conf.task_always_eager)
