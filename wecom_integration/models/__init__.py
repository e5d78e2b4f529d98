"""Every model of the app, from the room that owns it. ``wecom_integration.models`` stays the one place to
import them from (Django loads the app's models here; host code and migrations name them so).

Every row belongs to one tenant.
"""

from wecom_integration.approvals.models import Approval, MembershipApprovalSetting
from wecom_integration.callbacks.models import CallbackAttempt, CallbackEvent
from wecom_integration.configuration.models import (
    CORP_ID_RE,
    DOMAIN_FILE_MAX_BYTES,
    DOMAIN_FILE_RE,
    TOKEN_RE,
    DomainVerificationFile,
    WeComConfig,
    validate_aes_key,
    validate_corp_id,
    validate_domain_file_name,
    validate_proxy_url,
    validate_token,
)
from wecom_integration.customers.models import (
    CustomerGroup,
    CustomerGroupMember,
    CustomerTag,
    ExternalContact,
    FollowUser,
)
from wecom_integration.directory.models import (
    AuditLog,
    Binding,
    ContactTag,
    ContactTagMember,
    Department,
    SyncProposal,
    SyncRun,
    WeComUser,
)
from wecom_integration.messaging.models import CardClick, InboxMessage, MessageLog

__all__ = [
    "Approval",
    "MembershipApprovalSetting",
    "AuditLog",
    "Binding",
    "CORP_ID_RE",
    "CallbackAttempt",
    "CardClick",
    "CallbackEvent",
    "DOMAIN_FILE_MAX_BYTES",
    "DOMAIN_FILE_RE",
    "Department",
    "DomainVerificationFile",
    "CustomerGroup",
    "CustomerGroupMember",
    "CustomerTag",
    "ContactTag",
    "ContactTagMember",
    "ExternalContact",
    "FollowUser",
    "InboxMessage",
    "MessageLog",
    "SyncProposal",
    "SyncRun",
    "TOKEN_RE",
    "WeComConfig",
    "WeComUser",
    "validate_aes_key",
    "validate_corp_id",
    "validate_domain_file_name",
    "validate_proxy_url",
    "validate_token",
]
