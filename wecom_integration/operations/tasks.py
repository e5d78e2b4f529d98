"""Operations' Celery task (registered under ``wecom_integration.tasks``): the daily retention purge."""

from celery import shared_task

from wecom_integration.operations import retention


@shared_task(name="wecom_integration.tasks.purge_old_rows")
def purge_old_rows():
    """Delete rows past ``WECOM["RETENTION"]`` for every tenant; returns the rows deleted by kind."""
    totals = {}
    for counts in retention.purge().values():
        for label, rows in counts.items():
            totals[label] = totals.get(label, 0) + rows
    return totals
