"""Reliability under load and faults (issue 9): real processes, killed and restarted on purpose."""
