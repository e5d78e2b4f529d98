"""Signals for host projects, sent after a callback's handling has committed.

Connect a receiver the usual Django way::

    from wecom_integration.events import TextMessage
    from wecom_integration.signals import message_received

    @receiver(message_received, sender=TextMessage)
    def on_text(sender, tenant_id, event, callback_event, message, reply, **kwargs):
        ...

``sender`` is always the typed event's class from :mod:`wecom_integration.events` (``TextMessage``,
``ContactUserEvent``, ``ExternalContactEvent`` …), so a receiver can listen to one type only.

Every signal is sent once per stored callback, when its handling has been committed to the database;
a receiver therefore sees the local mirror already updated, and a receiver that raises is logged and
does not undo the handling or stop the other receivers. Receivers run in the Celery worker that
handled the event (inline, in the web process, when Celery runs eagerly): keep them short, or hand
slow work to a task of your own.

Receivers must accept ``**kwargs``: arguments may be added in later versions. Every signal carries
``replay`` (bool): True when an admin dispatched a stored event again ("Dispatch again" in the event
log), so a receiver with side effects of its own can keep them to the first time.
"""

from django.dispatch import Signal

#: An employee sent a message to the tenant's app (text, image, voice, video, location, link).
#:
#: Arguments:
#:
#: - ``tenant_id`` (int): the tenant whose app received it.
#: - ``event`` (:class:`~wecom_integration.events.Message` subclass): the parsed message; its
#:   ``from_user_name`` is the employee's WeCom userid.
#: - ``callback_event`` (:class:`~wecom_integration.models.CallbackEvent`): the stored callback.
#: - ``message`` (:class:`~wecom_integration.models.InboxMessage`): the message as it is in the inbox.
#: - ``reply`` (dict or None): the passive reply WeCom was given, in the dict form of
#:   :func:`wecom_integration.messaging.inbox.reply_as_dict`.
message_received = Signal()

#: An employee did something in the tenant's app that is not a message: followed or unfollowed it
#: (subscribe / unsubscribe), opened it (enter_agent), tapped a menu (click, view, scancode_*, pic_*,
#: location_select) or reported a location (LOCATION).
#:
#: Arguments: ``tenant_id``, ``event`` (an :class:`~wecom_integration.events.AppEvent` subclass;
#: ``event.event`` is WeCom's event name, ``event.event_key`` the menu key) and ``callback_event``.
app_event_received = Signal()

#: The tenant's WeCom contact book changed and the local mirror has been updated.
#:
#: Arguments:
#:
#: - ``tenant_id`` (int).
#: - ``event`` (:class:`~wecom_integration.events.ContactUserEvent`, ``ContactPartyEvent`` or
#:   ``ContactTagEvent``).
#: - ``callback_event`` (:class:`~wecom_integration.models.CallbackEvent`).
#: - ``change_type`` (str): ``create_user``, ``update_user``, ``delete_user``, ``create_party``,
#:   ``update_party``, ``delete_party`` or ``update_tag``.
#: - ``wecom_user`` (:class:`~wecom_integration.models.WeComUser` or None): the member after the change
#:   (renames: under the new userid; deletions: with ``removed=True``).
#: - ``department`` (:class:`~wecom_integration.models.Department` or None): likewise for departments.
#:
#: Not sent for an event that was ignored because a newer change of the same member or department had
#: already been applied (events can arrive out of order).
contact_changed = Signal()

#: The tenant's customers (external contacts) changed and the local copy has been updated.
#:
#: Arguments:
#:
#: - ``tenant_id`` (int).
#: - ``event`` (:class:`~wecom_integration.events.ExternalContactEvent`, ``ExternalChatEvent`` or
#:   ``ExternalTagEvent``).
#: - ``callback_event`` (:class:`~wecom_integration.models.CallbackEvent`).
#: - ``change_type`` (str): e.g. ``add_external_contact``, ``edit_external_contact``,
#:   ``del_external_contact``, ``del_follow_user``, ``add_half_external_contact``, ``transfer_fail``.
#: - ``external_contact`` (:class:`~wecom_integration.models.ExternalContact` or None): the customer
#:   after the change; None for group-chat and tag events.
#: - ``follow_user`` (:class:`~wecom_integration.models.FollowUser` or None): the member's relation
#:   to the customer that the event is about (the event's UserID), when there is one.
#: - ``group`` (:class:`~wecom_integration.models.CustomerGroup` or None): the customer group after a
#:   ``change_external_chat`` (create, update, dismiss); None for the other events.
customer_changed = Signal()

#: An approval (审批) of the tenant changed: submitted, approved, rejected, revoked, commented on. Sent
#: once per change that reached the mirror (a repeated or late callback that changes nothing sends
#: nothing), from the handled ``sys_approval_change`` callback, from the reconciliation job that fetched
#: an approval whose callback was lost, or from a submission through the admin or the API.
#:
#: Arguments:
#:
#: - ``tenant_id`` (int).
#: - ``approval`` (:class:`~wecom_integration.models.Approval`): the approval after the change; its
#:   ``status`` is WeCom's ``sp_status`` (1 in approval, 2 approved, 3 rejected, 4 revoked, 6 revoked
#:   after approval, 7 deleted, 10 paid), ``records`` every approver's decision.
#: - ``previous_status`` (int or None): the status before; None when the mirror did not know it.
#: - ``event`` (:class:`~wecom_integration.events.ApprovalChangeEvent` or None): the callback's event;
#:   None from the reconciliation or a submission. ``sender`` is always ``ApprovalChangeEvent``.
#: - ``callback_event`` (:class:`~wecom_integration.models.CallbackEvent` or None): the stored callback.
#: - ``source`` (str): "callback", "reconcile" or "submit".
approval_changed = Signal()

#: A member clicked a template card the app sent (``template_card_event``: a button, or the submit button of
#: a vote or multiple choice card). Sent once the click is recorded; the card's update (by the adapter's
#: ``template_card_update``) is queued, not yet done.
#:
#: Arguments:
#:
#: - ``tenant_id`` (int).
#: - ``event`` (:class:`~wecom_integration.events.TemplateCardEvent`): the parsed click.
#: - ``callback_event`` (:class:`~wecom_integration.models.CallbackEvent`): the stored callback.
#: - ``click`` (:class:`~wecom_integration.models.CardClick`): the recorded click, with ``message`` (the
#:   card's MessageLog, None for a card sent elsewhere), ``event_key``, ``selected_items`` and ``choice``.
card_clicked = Signal()

#: Memberships became pending approval (审核中) in a tenant: a sync found system users outside it, an
#: admin bound one, a WeCom sign-in met one. Sent once the change is committed. The approvals room uses
#: it to submit WeCom approvals when the tenant decides joining requests that way.
#:
#: Arguments:
#:
#: - ``tenant_id`` (int).
#: - ``user_ids`` (list of int): the accounts whose membership became pending.
#: - ``source`` (str): "sync", "manual" or "sign-in".
membership_pending = Signal()

#: Any callback was handled, whatever its type: messages, app events, contact and customer changes,
#: approvals (``sys_approval_change``), template-card and customer-service events, and types this
#: version does not know (:class:`~wecom_integration.events.UnknownEvent`). Sent once per handled
#: callback, after the specific signal above if there is one (those stay: listen to the one you need).
#:
#: Arguments:
#:
#: - ``tenant_id`` (int).
#: - ``event`` (:class:`~wecom_integration.events.Event` subclass): the typed event; ``sender`` is its
#:   class, ``event.kind`` says "message", "event", "contact", "customer", "approval", "card" or "unknown", and
#:   ``event.fields`` holds everything WeCom sent.
#: - ``callback_event`` (:class:`~wecom_integration.models.CallbackEvent`): the stored callback.
#: - ``kind`` (str): the callback URL it came to: "app", "contacts" or "customers".
#: - ``replay`` (bool): True when an admin dispatched the stored event again.
event_handled = Signal()
