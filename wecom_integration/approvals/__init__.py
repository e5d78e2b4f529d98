"""Approvals (审批): WeCom's OA approvals mirrored per tenant, submitted from the admin and the API, and
joining requests decided through them (``membership``)."""
