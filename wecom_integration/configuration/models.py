"""The tenant's WeCom configuration: credentials (secrets encrypted at rest), callback tokens and keys,
and the trusted-domain verification file."""

import base64
import binascii
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from wecom_integration.fields import EncryptedTextField
from wecom_integration.tenancy import ensure_setting

# The migrations and the tenant foreign keys below read it (issue 24).
ensure_setting()

TOKEN_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
CORP_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


def validate_token(value):
    if value and not TOKEN_RE.match(value):
        raise ValidationError(_("Token must be 1 to 32 letters or digits."), code="invalid_token")


def validate_aes_key(value):
    if not value:
        return
    if len(value) != 43:
        raise ValidationError(_("EncodingAESKey must be exactly 43 characters."), code="invalid_aes_key")
    try:
        key = base64.b64decode(value + "=", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ValidationError(
            _("EncodingAESKey must be 43 letters and digits that decode to a 32-byte key."),
            code="invalid_aes_key",
        )


def validate_proxy_url(value):
    """An outbound proxy: ``http://`` or ``https://`` host and port, optionally with user:password."""
    if not value:
        return
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = None, None
    well_formed = parts is not None and parts.scheme in ("http", "https") and parts.hostname and port
    if not well_formed or parts.path not in ("", "/"):
        raise ValidationError(
            _("Enter the proxy as http://host:port or https://host:port (user:password@ before the host if needed)."),
            code="invalid_proxy_url",
        )


def validate_corp_id(value):
    if not CORP_ID_RE.match(value or ""):
        raise ValidationError(_("CorpID must be letters and digits, like ww1234567890abcdef."), code="invalid_corp_id")


class WeComConfig(models.Model):
    """One per tenant: the credentials entered in 系统管理 → 第三方配置 → 企业微信集成 (seed 001)."""

    # The secret kinds and the callback kinds, as the client and the callback views name them.
    SECRET_FIELDS = ("secret", "contact_secret", "customer_secret", "approval_secret", "archive_secret")
    WRITE_ONLY_FIELDS = (
        "secret",
        "contact_secret",
        "contact_token",
        "contact_aes_key",
        "customer_secret",
        "customer_token",
        "customer_aes_key",
        "app_token",
        "app_aes_key",
        "approval_secret",
        "archive_secret",
        "archive_private_key",
        "proxy_url",
    )
    CALLBACK_KINDS = {
        # kind in the URL -> (token field, AES key field)
        "app": ("app_token", "app_aes_key"),
        "contacts": ("contact_token", "contact_aes_key"),
        "customers": ("customer_token", "customer_aes_key"),
    }

    tenant = models.OneToOneField(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_config", verbose_name=_("tenant")
    )
    corp_id = models.CharField(
        _("CorpID (企业ID)"),
        max_length=64,
        unique=True,
        validators=[validate_corp_id],
        help_text=_("My Enterprise → Enterprise Information → CorpID. JeecgBoot calls it AppKey."),
        error_messages={"unique": _("This CorpID is already used by another tenant (AppKey重复).")},
    )
    agent_id = models.PositiveIntegerField(
        _("AgentId (应用ID)"), help_text=_("The self-built app's AgentId, e.g. 1000002.")
    )
    secret = EncryptedTextField(_("app Secret"), blank=True, help_text=_("The self-built app's Secret."))
    contact_secret = EncryptedTextField(_("contact Secret (通讯录同步Secret)"), blank=True)
    contact_token = EncryptedTextField(_("contact-change Token"), blank=True, validators=[validate_token])
    contact_aes_key = EncryptedTextField(_("contact-change EncodingAESKey"), blank=True, validators=[validate_aes_key])

    class CustomerCredential(models.TextChoices):
        # Docs 92994, 96316: since 2023-12-01 new corps call the customer APIs only through a self-built app
        # listed under 客户联系 → 可调用接口的应用; older corps may still use the 客户联系 secret.
        SECRET = "secret", _("the customer-contact Secret (客户联系Secret; corps set up before 2023-12-01)")
        APP = "app", _("the app, authorised under 客户联系 → 可调用接口的应用")

    class TwoStepCredential(models.TextChoices):
        # Docs 99499, 99500, 99521: who exchanges the verification page's code.
        CONTACTS = "contacts", _("the contact-sync Secret (通讯录同步), with WeCom's verification page URL")
        APP = "app", _("the app, with the verification page set to the app's own OAuth link")

    customer_credential = models.CharField(
        _("customers are read with"),
        max_length=8,
        choices=CustomerCredential.choices,
        default=CustomerCredential.SECRET,
        help_text=_(
            "Corps set up since 2023-12-01 can no longer use the 客户联系 Secret: list this app under 客户联系 → "
            "可调用接口的应用 in the WeCom admin and choose the app."
        ),
    )
    customer_secret = EncryptedTextField(
        _("customer Secret (客户联系Secret)"),
        blank=True,
        help_text=_("Used only when customers are read with the customer-contact Secret."),
    )
    customer_token = EncryptedTextField(_("customer-change Token"), blank=True, validators=[validate_token])
    customer_aes_key = EncryptedTextField(
        _("customer-change EncodingAESKey"), blank=True, validators=[validate_aes_key]
    )
    app_token = EncryptedTextField(_("app message Token"), blank=True, validators=[validate_token])
    app_aes_key = EncryptedTextField(_("app message EncodingAESKey"), blank=True, validators=[validate_aes_key])
    approval_secret = EncryptedTextField(
        _("approval Secret (审批应用Secret)"),
        blank=True,
        help_text=_("Only when approvals are called with the approval app's own Secret; empty: the app Secret."),
    )
    archive_secret = EncryptedTextField(_("session-archive Secret (会话存档)"), blank=True)
    archive_private_key = EncryptedTextField(_("session-archive private key"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)

    auto_reply = models.TextField(
        _("auto-reply"), blank=True, help_text=_("If set, every text message to the app gets this text back.")
    )
    allow_signup = models.BooleanField(
        _("create accounts at sign-in"),
        default=False,
        help_text=_("A WeCom user with no account in this tenant gets one when signing in, as the sync would."),
    )
    class CustomerMemberLink(models.TextChoices):
        OFF = "", _("do nothing")
        LINK = "link", _("link it to the account whose unionid it is")
        CREATE = "create", _("link it, or create a member account when there is none")

    customer_member_link = models.CharField(
        _("a new customer with a WeChat unionid (会员同步注册)"),
        max_length=8,
        choices=CustomerMemberLink.choices,
        default=CustomerMemberLink.OFF,
        blank=True,
        help_text=_("How a customer becomes, or is linked to, a member account of this system; the host "
                    "project's adapter says which account a unionid belongs to."),
    )
    members_may_send = models.BooleanField(
        _("members may send messages"),
        default=False,
        help_text=_(
            "Ordinary members of the tenant may send messages to chosen members through the API. Sending to "
            "everyone (@all), to departments or to tags always needs a tenant administrator."
        ),
    )
    two_step_verification = models.BooleanField(_("two-step verification"), default=False)
    private_info_scope = models.BooleanField(
        _("ask members for their private information at sign-in (snsapi_privateinfo)"),
        default=False,
        help_text=_(
            "Apps created after 2022-06-20 get no mobile, email or avatar from the contact API. With this on, "
            "sign-in inside WeCom asks each member's consent (手动授权) and fills them from it."
        ),
    )
    proxy_url = EncryptedTextField(
        _("outbound proxy for WeCom calls (固定出口IP)"),
        blank=True,
        validators=[validate_proxy_url],
        help_text=_(
            "Optional. Every call to WeCom for this tenant goes through this HTTPS proxy, so WeCom sees one "
            "fixed IP to add to the app's trusted IPs (企业可信IP). Example: http://10.0.0.5:3128"
        ),
    )
    two_step_credential = models.CharField(
        _("two-step verification through"),
        max_length=8,
        choices=TwoStepCredential.choices,
        default=TwoStepCredential.CONTACTS,
        help_text=_(
            "WeCom admin, two-step verification (二次验证): with the contact-sync Secret, set the verification page "
            "to this site's verification URL; with the app, set it to the app's OAuth link of that URL, and the "
            "members must be in the app's visible range."
        ),
    )
    periodic_sync = models.BooleanField(_("periodic sync"), default=False)
    sync_interval_minutes = models.PositiveIntegerField(_("sync interval (minutes)"), default=1440)
    menu = models.JSONField(_("app menu"), default=dict, blank=True)

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("WeCom configuration")
        verbose_name_plural = _("WeCom configurations")

    def __str__(self):
        return f"{self.tenant} · {self.corp_id}"

    def __repr__(self):
        # Never the secrets.
        return f"<WeComConfig tenant={self.tenant_id} corp_id={self.corp_id} agent_id={self.agent_id}>"

    def callback_credentials(self, kind):
        """(token, aes_key) for a callback URL kind, or (\"\", \"\") when not configured."""
        token_field, key_field = self.CALLBACK_KINDS[kind]
        return getattr(self, token_field), getattr(self, key_field)

    @property
    def effective_customer_secret(self):
        return self.secret if self.customer_credential == self.CustomerCredential.APP else self.customer_secret

DOMAIN_FILE_RE = re.compile(r"^WW_verify_[A-Za-z0-9]{8,64}\.txt$")
DOMAIN_FILE_MAX_BYTES = 1024


def validate_domain_file_name(value):
    if not DOMAIN_FILE_RE.match(value or ""):
        raise ValidationError(
            _("The file must be the one WeCom gives you, named like WW_verify_AbCd1234EfGh5678.txt."),
            code="invalid_domain_file_name",
        )


class DomainVerificationFile(models.Model):
    """The ``WW_verify_<code>.txt`` file WeCom asks to find at the root of an app's trusted domain
    (应用管理 → 网页授权及JS-SDK → 可信域名 → 申请校验域名), served byte for byte by ``urls_root``."""

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_domain_files")
    name = models.CharField(_("file name"), max_length=80, unique=True, validators=[validate_domain_file_name])
    content = models.BinaryField(_("content"), max_length=DOMAIN_FILE_MAX_BYTES)
    uploaded_at = models.DateTimeField(_("uploaded at"), auto_now=True)

    class Meta:
        verbose_name = _("domain verification file")
        verbose_name_plural = _("domain verification files")
        ordering = ["-uploaded_at"]

    def __str__(self):
        return self.name
