"""sys_approval_change callback XML as WeCom documents it (doc 91815), for the mirror's tests."""

from xml.sax.saxutils import escape


def approval_xml(corp_id, *, sp_no, status, change, apply_time, create_time, steps, applicant="alice",
                 notifyers=(), comments=(), template_id="tpl-leave", sp_name="请假", agent_id=1000002):
    """``steps``: [(step status, [(approver, detail status, speech, time)])]; ``comments``: [(userid, time,
    text)]."""
    records = "".join(
        f"<SpRecord><SpStatus>{step_status}</SpStatus><ApproverAttr>1</ApproverAttr>"
        + "".join(
            f"<Details><Approver><UserId>{escape(who)}</UserId></Approver><Speech>{escape(speech)}</Speech>"
            f"<SpStatus>{detail_status}</SpStatus><SpTime>{when}</SpTime><MediaId></MediaId></Details>"
            for who, detail_status, speech, when in details
        )
        + "</SpRecord>"
        for step_status, details in steps
    )
    notified = "".join(f"<Notifyer><UserId>{escape(who)}</UserId></Notifyer>" for who in notifyers)
    commented = "".join(
        f"<Comments><CommentUserInfo><UserId>{escape(who)}</UserId></CommentUserInfo><CommentTime>{when}"
        f"</CommentTime><CommentContent>{escape(text)}</CommentContent><CommentId>c{when}</CommentId></Comments>"
        for who, when, text in comments
    )
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[sys_approval_change]]></Event><AgentID>{agent_id}</AgentID>"
        f"<ApprovalInfo><SpNo>{sp_no}</SpNo><SpName><![CDATA[{sp_name}]]></SpName><SpStatus>{status}</SpStatus>"
        f"<TemplateId><![CDATA[{template_id}]]></TemplateId><ApplyTime>{apply_time}</ApplyTime>"
        f"<Applyer><UserId><![CDATA[{applicant}]]></UserId><Party><![CDATA[1]]></Party></Applyer>"
        f"{records}{notified}{commented}<StatuChangeEvent>{change}</StatuChangeEvent></ApprovalInfo></xml>"
    )
