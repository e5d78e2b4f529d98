"""A generated WeCom organisation: departments, members and external contacts.

Everything is deterministic by seed so that a failing test can be replayed, and compact enough
that 100,000 members in 5,000 departments fit in a few seconds and tens of megabytes: members are
``__slots__`` objects whose bulky, derivable fields (mobile, email, avatar …) are computed on
demand, and every index the API needs (members per department, the list_id roster) is kept up to
date so that a page costs O(page), not O(organisation).

The JSON shapes follow the contact API pages: user/get https://developer.work.weixin.qq.com/document/path/90196,
department/list https://developer.work.weixin.qq.com/document/path/90208, user/list_id
https://developer.work.weixin.qq.com/document/path/96067, externalcontact/get
https://developer.work.weixin.qq.com/document/path/92114. The app's visible range (可见范围) and WeCom's
case-insensitive userids (``find_user``) follow https://developer.work.weixin.qq.com/document/path/90236.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import threading
from bisect import bisect_left
from itertools import accumulate

__all__ = [
    "SENSITIVE_USER_FIELDS", "Department", "ExternalContact", "Follow", "Org", "User", "dept_user_json",
]

# Withheld from user/get and user/simplelist under the 2022 restrictions, and from contact callbacks.
SENSITIVE_USER_FIELDS = (
    "mobile", "email", "biz_mail", "avatar", "thumb_avatar", "gender", "address", "telephone", "qr_code",
)

# Surname frequencies (per ten thousand) roughly as in the national census, so that 王/李/张 dominate
# and same-name members appear as often as they do in real companies.
_SURNAMES = (
    "王wang725 李li719 张zhang683 刘liu538 陈chen453 杨yang308 黄huang223 赵zhao219 吴wu205 周zhou203 "
    "徐xu167 孙sun154 马ma146 朱zhu144 胡hu131 郭guo115 何he112 高gao108 林lin107 罗luo94 郑zheng93 "
    "梁liang88 谢xie77 宋song73 唐tang71 许xu66 韩han65 冯feng64 邓deng62 曹cao61 彭peng58 曾zeng57 "
    "肖xiao56 田tian55 董dong54 袁yuan50 潘pan50 于yu49 蒋jiang48 蔡cai48 余yu47 杜du46 叶ye44 "
    "程cheng43 苏su41 魏wei40 吕lv40 丁ding39 任ren38 沈shen37 姚yao36 卢lu36 姜jiang35 崔cui34 "
    "钟zhong33 谭tan32 陆lu31 汪wang30 范fan30 金jin29 石shi29 廖liao28 贾jia28 夏xia27 韦wei27 "
    "付fu26 方fang26 白bai25 邹zou25 孟meng25 熊xiong24 秦qin24 邱qiu24 江jiang23 尹yin23 薛xue22 "
    "闫yan22 段duan21 雷lei21 侯hou20 龙long20 史shi20 陶tao19 黎li19 贺he19 顾gu18 毛mao18 郝hao18 "
    "龚gong17 邵shao17 万wan17 钱qian16 严yan16 覃qin15 武wu15 戴dai15 莫mo14 孔kong14 向xiang14 "
    "汤tang13 欧阳ouyang5 司马sima1 上官shangguan1 诸葛zhuge1"
)
_GIVEN_CHARS = (
    "伟wei 芳fang 娜na 敏min 静jing 丽li 强qiang 磊lei 军jun 洋yang 勇yong 艳yan 杰jie 娟juan 涛tao "
    "明ming 超chao 霞xia 平ping 刚gang 辉hui 鹏peng 华hua 玲ling 飞fei 斌bin 宇yu 浩hao 凯kai 健jian "
    "俊jun 帆fan 帅shuai 旭xu 宁ning 龙long 林lin 欢huan 阳yang 建jian 亮liang 成cheng 佳jia 婷ting "
    "雪xue 琳lin 晨chen 慧hui 颖ying 倩qian 欣xin 萍ping 红hong 波bo 丹dan 峰feng 琴qin 云yun 梅mei "
    "莉li 兰lan 秀xiu 英ying 志zhi 国guo 文wen 海hai 鑫xin 博bo 瑞rui 婧jing 蕾lei 璐lu 晶jing 思si "
    "雨yu 子zi 轩xuan 涵han 梓zi 怡yi 悦yue 诗shi 晓xiao 嘉jia 睿rui 泽ze 昊hao 然ran 一yi 航hang "
    "宏hong 春chun 东dong 晖hui 德de 永yong 新xin 立li 小xiao 玉yu 燕yan 金jin 凤feng 桂gui 荣rong "
    "振zhen 天tian 家jia 雅ya 美mei 芸yun 琪qi 楠nan 彤tong 婉wan 韬tao 毅yi 坤kun 锋feng 翔xiang "
    "勤qin 璇xuan 菲fei 露lu 瑶yao 薇wei 蓉rong 冰bing 清qing 茜qian"
)
# The given names that make 张伟 and 王芳 the most common full names in China.
_COMMON_GIVEN = "伟 芳 娜 敏 静 秀英 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 秀兰 霞 平 刚 桂英".split()


def _parse_table(text: str) -> list[tuple[str, str, int]]:
    rows = []
    for item in text.split():
        han = "".join(c for c in item if ord(c) > 127)
        rest = item[len(han):]
        latin = rest.rstrip("0123456789")
        weight = int(rest[len(latin):] or 1)
        rows.append((han, latin.replace("_", " "), weight))
    return rows


_SURNAME_ROWS = _parse_table(_SURNAMES)
_SURNAME_CUM = list(accumulate(w for _, _, w in _SURNAME_ROWS))
_GIVEN_ROWS = [(h, p) for h, p, _ in _parse_table(_GIVEN_CHARS)]
_PINYIN = {h: p for h, p in _GIVEN_ROWS}

_POSITIONS = (
    ("工程师", 20), ("高级工程师", 12), ("资深工程师", 5), ("测试工程师", 6), ("架构师", 2),
    ("产品经理", 6), ("项目经理", 4), ("设计师", 4), ("销售经理", 8), ("客户经理", 6), ("销售代表", 6),
    ("会计", 3), ("出纳", 1), ("人事专员", 3), ("行政助理", 3), ("运营专员", 5), ("主管", 3),
    ("经理", 3), ("总监", 1), ("实习生", 3), ("专员", 4),
)
_POSITION_NAMES = [p for p, _ in _POSITIONS]
_POSITION_CUM = list(accumulate(w for _, w in _POSITIONS))

# Department families: the top-level unit and the sub-units that typically sit under it.
_FAMILIES = (
    ("研发", "R&D", "前端Frontend 后端Backend 移动端Mobile 测试QA 架构Architecture 运维Operations "
                  "数据平台Data_Platform 算法Algorithms 基础设施Infrastructure 安全Security"),
    ("销售", "Sales", "华东East_China 华南South_China 华北North_China 西南Southwest 西北Northwest "
                    "华中Central_China 东北Northeast 大客户Key_Accounts 渠道Channels 海外Overseas"),
    ("产品", "Product", "用户产品Consumer_Product 企业产品Enterprise_Product 增长Growth 体验设计UX_Design "
                      "商业化Monetization"),
    ("市场", "Marketing", "品牌Brand 公关PR 活动Events 内容Content 数字营销Digital_Marketing"),
    ("财务", "Finance", "会计Accounting 税务Tax 资金Treasury 预算Budget 审计Audit"),
    ("人力资源", "HR", "招聘Recruiting 培训Training 薪酬Compensation 员工关系Employee_Relations"),
    ("行政", "Admin", "后勤Facilities 采购Purchasing 前台Reception 安保Security"),
    ("客户服务", "Customer Service", "热线Hotline 在线服务Online_Support 售后After_Sales 质检Quality_Check"),
    ("运营", "Operations", "用户运营User_Ops 内容运营Content_Ops 数据分析Analytics 社区Community"),
    ("供应链", "Supply Chain", "计划Planning 仓储Warehousing 物流Logistics 采购Sourcing"),
    ("生产", "Manufacturing", "一车间Workshop_A 二车间Workshop_B 工艺Process 设备Equipment 质量Quality"),
    ("法务", "Legal", "合规Compliance 知识产权IP 合同Contracts"),
    ("信息技术", "IT", "桌面支持Helpdesk 网络Network 系统Systems 信息安全InfoSec"),
    ("战略发展", "Strategy", "投资Investment 研究Research 战略规划Planning"),
)
_FAMILY_ROWS = [(zh, en, _parse_table(subs)) for zh, en, subs in _FAMILIES]
_TOP_SUFFIXES = (("中心", "Center"), ("部", "Dept"), ("事业部", "Division"))
_DEPTH_SUFFIXES = {3: ("部", "Dept"), 4: ("组", "Team")}
_NUMERALS = "一二三四五六七八九十"
_COMPANIES = (
    ("星河科技有限公司", "Galaxy Technology Co., Ltd."), ("华信贸易有限公司", "Huaxin Trading Co., Ltd."),
    ("云帆网络科技有限公司", "Yunfan Network Technology Co., Ltd."),
    ("明德教育集团", "Mingde Education Group"), ("东方制造股份有限公司", "Dongfang Manufacturing Co., Ltd."),
)
_EXTERNAL_CORPS = ("腾达科技", "恒信贸易", "远航物流", "博雅教育", "安康医疗", "金石投资", "蓝海传媒",
                   "青禾农业")
# Real WeChat nicknames carry emoji and Latin; products must store them intact (utf8mb4).
_NICKNAMES = ("小明", "Alice", "🌸花花", "阿杰", "Lucky☀", "老王", "Kevin", "晴天", "🐟鱼", "Momo", "大鹏",
              "J.")
_TAGS = (
    ("客户等级", "A类客户"), ("客户等级", "B类客户"), ("客户等级", "C类客户"),
    ("来源", "展会"), ("来源", "官网"), ("来源", "转介绍"), ("意向", "高意向"), ("意向", "观望"),
)
_quote_json = json.encoder.encode_basestring  # a JSON string literal, non-ASCII kept as is
_QR_BASE = "https://open.work.weixin.qq.com/wwopen/userQRCode?vcode=vc"
_MOBILE_PREFIXES = ("138", "139", "150", "151", "152", "158", "159", "186", "187", "188", "135", "136",
                    "137", "180", "189", "133", "153", "177", "181", "199")


def _stable_hex(*parts: object, length: int = 32) -> str:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=32).hexdigest()
    return digest[:length]


class Department:
    """One department (部门). ``children`` stay sorted by WeCom's rule: larger ``order`` first."""

    __slots__ = ("id", "name", "name_en", "parentid", "order", "depth", "children", "members", "leaders")

    def __init__(self, id: int, name: str, name_en: str, parentid: int, order: int, depth: int):
        self.id = id
        self.name = name
        self.name_en = name_en
        self.parentid = parentid
        self.order = order
        self.depth = depth
        self.children: list[int] = []
        self.members: list[User] = []
        self.leaders: list[User] = []

    def __repr__(self) -> str:
        return f"<Department {self.id} {self.name}>"


class User:
    """One member (成员). Derivable contact fields are computed from ``n`` unless overridden in ``extra``."""

    __slots__ = ("n", "seq", "userid", "name", "departments", "leader_in", "position", "gender", "status",
                 "main_department", "extra", "follows", "_org")

    def __init__(self, org: Org, n: int, seq: int, userid: str, name: str, departments: tuple[int, ...],
                 position: str, gender: str, status: int):
        self._org = org
        self.n = n
        self.seq = seq
        self.userid = userid
        self.name = name
        self.departments = departments
        self.leader_in = (0,) * len(departments)
        self.position = position
        self.gender = gender
        self.status = status
        self.main_department = departments[0]
        self.extra: dict | None = None
        self.follows: list[Follow] | None = None

    def __repr__(self) -> str:
        return f"<User {self.userid} {self.name}>"

    def _get(self, key: str, default: str) -> str:
        extra = self.extra
        if extra is not None and key in extra:
            return extra[key]
        return default

    def set_extra(self, key: str, value) -> None:
        if self.extra is None:
            self.extra = {}
        self.extra[key] = value

    @property
    def mobile(self) -> str:
        # Multiplying by a number coprime to 10**8 permutes the suffixes, so mobiles are unique.
        suffix = (self.n * 7919 + self._org.seed * 104729) % 100_000_000
        return self._get("mobile", f"{_MOBILE_PREFIXES[self.n % len(_MOBILE_PREFIXES)]}{suffix:08d}")

    @property
    def email(self) -> str:
        return self._get("email", f"{self.userid}@{self._org.mail_domain}")

    @property
    def biz_mail(self) -> str:
        return self._get("biz_mail", f"{self.userid}@{self._org.biz_mail_domain}")

    @property
    def avatar(self) -> str:
        return self._get("avatar", f"{self._org.avatar_base}/{_stable_hex(self._org.seed, self.n)}/0")

    @property
    def alias(self) -> str:
        return self._get("alias", "")

    @property
    def telephone(self) -> str:
        return self._get("telephone", f"021-{60000000 + self.n % 9999999}" if self.n % 4 == 0 else "")

    @property
    def address(self) -> str:
        return self._get("address", "上海市浦东新区世纪大道100号" if self.n % 3 == 0 else "")

    @property
    def open_userid(self) -> str:
        return "wo" + _stable_hex("open", self._org.seed, self.n, length=30)

    @property
    def direct_leader(self) -> list[str]:
        dept = self._org.departments.get(self.main_department)
        if dept is None:
            return []
        return [leader.userid for leader in dept.leaders[:1] if leader is not self]


class ExternalContact:
    """A customer (外部联系人) added by one or more members."""

    __slots__ = ("external_userid", "name", "type", "gender", "unionid", "corp_name", "position", "n",
                 "followers")

    def __init__(self, external_userid: str, name: str, type: int, gender: int, n: int,
                 unionid: str = "", corp_name: str = "", position: str = ""):
        self.external_userid = external_userid
        self.name = name
        self.type = type
        self.gender = gender
        self.n = n
        self.unionid = unionid
        self.corp_name = corp_name
        self.position = position
        self.followers: list[Follow] = []


class Follow:
    """The relation between a member and an external contact (follow_user / follow_info)."""

    __slots__ = ("user", "contact", "remark", "description", "createtime", "tag_ids", "add_way", "state",
                 "remark_mobiles")

    def __init__(self, user: User, contact: ExternalContact, remark: str, description: str, createtime: int,
                 tag_ids: tuple[str, ...], add_way: int, state: str, remark_mobiles: tuple[str, ...] = ()):
        self.user = user
        self.contact = contact
        self.remark = remark
        self.description = description
        self.createtime = createtime
        self.tag_ids = tag_ids
        self.add_way = add_way
        self.state = state
        self.remark_mobiles = remark_mobiles


def dept_user_json(rows: list[tuple[str, int]]) -> str:
    """user/list_id's dept_user array as JSON text. Pages of 10,000 rows are the hot path of every
    sync benchmark, so they are formatted directly instead of going through dicts and json.dumps."""
    quote = _quote_json
    return "[" + ",".join([f'{{"userid":{quote(u)},"department":{d}}}' for u, d in rows]) + "]"


def _encode_cursor(*numbers: int) -> str:
    raw = ":".join(map(str, numbers)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> tuple[int, ...] | None:
    """Decode an opaque cursor made by this module; None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        numbers = tuple(int(x) for x in raw.split(":"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if len(numbers) != parts or any(x < 0 for x in numbers):
        return None
    return numbers


class Org:
    """The contact book of one fake corp. Mutate it only under ``lock`` (FakeWeCom does)."""

    def __init__(self, seed: int = 0, company: tuple[str, str] = _COMPANIES[0]):
        self.seed = seed
        self.lock = threading.RLock()
        self.departments: dict[int, Department] = {}
        self.users: dict[str, User] = {}
        # WeCom matches userids case-insensitively (ZhangSan and zhangsan are one member).
        self._users_lower: dict[str, User] = {}
        # The list_id roster: members in creation order, with their seq numbers for bisecting.
        self._roster: list[User] = []
        self._roster_seqs: list[int] = []
        self._next_seq = 1
        self._next_n = 0
        self.external_contacts: dict[str, ExternalContact] = {}
        self.tags = {"et" + _stable_hex("tag", seed, i, length=30): pair for i, pair in enumerate(_TAGS)}
        self.mail_domain = "example.com"
        self.biz_mail_domain = f"corp{seed}.wecom.work"
        # Pointed at the fake server once it listens, so nothing in a demo reaches a real CDN.
        self.avatar_base = "https://wework.qpic.cn/wwpic"
        root = Department(1, company[0], company[1], 0, 100000000, 1)
        self.departments[1] = root
        # The self-built app's visible range (可见范围): None is the whole corp.
        self._visible_departments: frozenset[int] | None = None
        self._visible_users: frozenset[str] = frozenset()

    # ---------------------------------------------------------------- generation
    @classmethod
    def generate(cls, users: int = 200, departments: int = 20, seed: int = 1) -> Org:
        """Build a realistic organisation of ``departments`` departments (root id 1 included) and
        ``users`` members, the same every time for the same arguments."""
        if departments < 1:
            raise ValueError("an organisation has at least its root department")
        rng = random.Random(seed)
        org = cls(seed=seed, company=_COMPANIES[seed % len(_COMPANIES)])
        org._generate_departments(rng, departments)
        org._generate_users(rng, users)
        org._generate_external_contacts(rng)
        return org

    def _generate_departments(self, rng: random.Random, total: int) -> None:
        counts = _depth_counts(total)
        by_depth: dict[int, list[Department]] = {1: [self.departments[1]]}
        family_of: dict[int, int] = {}
        used_names: dict[int, set[str]] = {}
        next_id = 2
        for depth, count in enumerate(counts, start=2):
            parents = by_depth[depth - 1]
            level = by_depth.setdefault(depth, [])
            for k in range(count):
                parent = rng.choice(parents)
                if depth == 2:
                    family = k % len(_FAMILIES)
                else:
                    family = family_of[parent.id]
                used = used_names.setdefault(parent.id, set())
                name, name_en = _department_name(rng, depth, family, k, used)
                siblings = len(parent.children)
                dept = Department(next_id, name, name_en, parent.id, 100000000 - 1000 * siblings, depth)
                family_of[next_id] = family
                self.departments[next_id] = dept
                parent.children.append(next_id)
                level.append(dept)
                next_id += 1

    def _generate_users(self, rng: random.Random, total: int) -> None:
        if total <= 0:
            return
        depts = list(self.departments.values())
        # People sit mostly in leaf teams; the root holds only the top management.
        weights = [0.05 if d.id == 1 else (1.0 if not d.children else 0.3) for d in depts]
        cum = list(accumulate(weights))
        mains = rng.choices(depts, cum_weights=cum, k=total)
        surnames = rng.choices(_SURNAME_ROWS, cum_weights=_SURNAME_CUM, k=total)
        positions = rng.choices(_POSITION_NAMES, cum_weights=_POSITION_CUM, k=total)
        names: list[tuple[str, str]] = []
        for surname, surname_py, _ in surnames:
            r = rng.random()
            if r < 0.2:
                given = rng.choice(_COMMON_GIVEN)
            elif r < 0.45:
                given = rng.choice(_GIVEN_ROWS)[0]
            else:
                given = rng.choice(_GIVEN_ROWS)[0] + rng.choice(_GIVEN_ROWS)[0]
            names.append((surname + given, surname_py + "".join(_PINYIN[c] for c in given)))
        if total >= 50:
            _ensure_duplicates(names)
        taken: dict[str, int] = {}
        for i in range(total):
            name, base = names[i]
            seen = taken.get(base, 0) + 1
            taken[base] = seen
            userid = base if seen == 1 else f"{base}{seen}"
            main = mains[i]
            dept_ids: tuple[int, ...] = (main.id,)
            if len(depts) > 1 and rng.random() < 0.1:
                other = rng.choice(depts)
                if other is not main:
                    dept_ids = (main.id, other.id)
            r = rng.random()
            status = 1 if r < 0.9 else (2 if r < 0.94 else 4)
            gender = "1" if rng.random() < 0.55 else "2"
            self.add_user(userid, name, dept_ids, positions[i], gender, status)
        for dept in depts:
            if not dept.members or rng.random() > 0.9:
                continue
            leaders = [dept.members[0]]
            if len(dept.members) > 3 and rng.random() < 0.1:
                leaders.append(dept.members[1])
            for leader in leaders:
                self._set_leader(leader, dept, True)

    def _generate_external_contacts(self, rng: random.Random) -> None:
        tag_ids = list(self.tags)
        created: list[ExternalContact] = []
        base_time = 1_700_000_000
        for user in self._roster:
            if user.status != 1 or rng.random() > 0.3:
                continue
            for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 5))):
                if created and rng.random() < 0.05:
                    contact = rng.choice(created)
                    if any(f.user is user for f in contact.followers):
                        continue
                else:
                    contact = self._new_contact(rng, len(created))
                    created.append(contact)
                tags = tuple(rng.sample(tag_ids, rng.choice((0, 0, 1, 2))))
                state = rng.choice(("", "", "", "channel_expo", "qr_web"))
                remark = contact.name if rng.random() < 0.5 else contact.name[:1] + "总"
                follow = Follow(user, contact, remark, "", base_time + rng.randrange(31_536_000), tags,
                                rng.choice((0, 1, 1, 2, 3, 201)), state)
                self._attach_follow(follow)

    def _new_contact(self, rng: random.Random, n: int) -> ExternalContact:
        raw = rng.getrandbits(156).to_bytes(20, "big")
        external_userid = "wm" + base64.urlsafe_b64encode(raw).decode()[:26] + "AAAA"
        if rng.random() < 0.75:
            name = rng.choice(_NICKNAMES) if rng.random() < 0.5 else self._random_name(rng)
            return ExternalContact(external_userid, name, 1, rng.choice((0, 1, 2)), n,
                                   unionid="o" + base64.urlsafe_b64encode(raw[:20]).decode()[:27])
        return ExternalContact(external_userid, self._random_name(rng), 2, rng.choice((0, 1, 2)), n,
                               corp_name=rng.choice(_EXTERNAL_CORPS), position=rng.choice(_POSITION_NAMES))

    @staticmethod
    def _random_name(rng: random.Random) -> str:
        surname = rng.choices(_SURNAME_ROWS, cum_weights=_SURNAME_CUM)[0][0]
        return surname + rng.choice(_GIVEN_ROWS)[0] + rng.choice(_GIVEN_ROWS)[0]

    # ---------------------------------------------------------------- indexes
    def _index_new_user(self, user: User) -> None:
        self.users[user.userid] = user
        self._users_lower[user.userid.lower()] = user
        self._roster.append(user)
        self._roster_seqs.append(user.seq)
        self._next_seq = user.seq + 1
        for dept_id in user.departments:
            self.departments[dept_id].members.append(user)

    def _set_leader(self, user: User, dept: Department, leader: bool) -> None:
        flags = list(user.leader_in)
        flags[user.departments.index(dept.id)] = 1 if leader else 0
        user.leader_in = tuple(flags)
        if leader and user not in dept.leaders:
            dept.leaders.append(user)
        elif not leader and user in dept.leaders:
            dept.leaders.remove(user)

    def _attach_follow(self, follow: Follow) -> None:
        user, contact = follow.user, follow.contact
        if user.follows is None:
            user.follows = []
        user.follows.append(follow)
        contact.followers.append(follow)
        self.external_contacts[contact.external_userid] = contact

    # ---------------------------------------------------------------- the app's visible range
    def set_visible_range(self, departments=(), users=()) -> None:
        """Set the self-built app's visible range (应用可见范围, set in the WeCom admin under the app's
        page): whole departments (each with its whole subtree) and single members, by object or id.
        With neither, the app sees the whole corp (the default).

        What the app's secret reads follows it: https://developer.work.weixin.qq.com/document/path/90196
        ("应用只能获取可见范围内的成员信息"), department/list
        https://developer.work.weixin.qq.com/document/path/90208, and the customer APIs
        https://developer.work.weixin.qq.com/document/path/92994 ("应用只能获取到可见范围内的成员")."""
        dept_ids = frozenset(int(getattr(d, "id", d)) for d in departments)
        userids = frozenset(str(getattr(u, "userid", u)) for u in users)
        if not dept_ids and not userids:
            self.clear_visible_range()
            return
        self._visible_departments = dept_ids
        self._visible_users = userids

    def clear_visible_range(self) -> None:
        """The app sees the whole corp again."""
        self._visible_departments = None
        self._visible_users = frozenset()

    @property
    def visible_range(self) -> dict | None:
        """The range as set (``{"departments": [...], "users": [...]}``), None for the whole corp."""
        if self._visible_departments is None:
            return None
        return {"departments": sorted(self._visible_departments), "users": sorted(self._visible_users)}

    def app_sees_department(self, dept) -> bool:
        """True when the department (object or id) is in the app's visible range: it, or a department
        above it, was put in the range."""
        visible = self._visible_departments
        if visible is None:
            return True
        dept_id = int(getattr(dept, "id", dept))
        departments = self.departments
        for _ in range(64):  # deeper than WeCom's 15 levels: a parent cycle cannot spin
            if dept_id in visible:
                return True
            node = departments.get(dept_id)
            if node is None or node.parentid == 0:
                return False
            dept_id = node.parentid
        return False

    def app_sees_user(self, user) -> bool:
        """True when the member (object or userid) is in the app's visible range: named in it, or in
        one of its departments (or below one)."""
        if self._visible_departments is None:
            return True
        if isinstance(user, str):
            found = self.users.get(user)
            if found is None:
                return user in self._visible_users
            user = found
        if user.userid in self._visible_users:
            return True
        return any(self.app_sees_department(d) for d in user.departments)

    # ---------------------------------------------------------------- queries
    def subtree(self, dept_id: int) -> list[Department]:
        """The department and all below it, parents before children (WeCom's recursive listing)."""
        out: list[Department] = []
        stack = [dept_id]
        departments = self.departments
        while stack:
            dept = departments[stack.pop()]
            out.append(dept)
            stack.extend(reversed(dept.children))
        return out

    def members_of(self, dept_id: int, recursive: bool = False) -> list[User]:
        """Members directly in the department, or in its whole subtree (each member once)."""
        if not recursive:
            return list(self.departments[dept_id].members)
        seen: set[int] = set()
        out: list[User] = []
        for dept in self.subtree(dept_id):
            for user in dept.members:
                if user.seq not in seen:
                    seen.add(user.seq)
                    out.append(user)
        return out

    def find_user(self, userid: str) -> User | None:
        """The member whose userid equals ``userid`` ignoring case, as WeCom looks members up."""
        user = self.users.get(userid)
        return user if user is not None else self._users_lower.get(userid.lower())

    def active_users(self) -> list[User]:
        return [u for u in self._roster if u.status == 1]

    def list_id_page(self, cursor: str, limit: int) -> tuple[list[tuple[str, int]], str] | None:
        """One user/list_id page: (userid, department) rows, one per membership, and the next cursor
        ("" at the end). None when the cursor is not valid."""
        if cursor:
            position = decode_cursor(cursor, 2)
            if position is None:
                return None
            seq, skip = position
        else:
            seq, skip = 0, 0
        rows: list[tuple[str, int]] = []
        roster = self._roster
        i = bisect_left(self._roster_seqs, seq)
        if i < len(roster) and roster[i].seq != seq:
            skip = 0  # the member the cursor pointed at left; resume with the next one
        while i < len(roster):
            user = roster[i]
            depts = user.departments
            for k in range(skip, len(depts)):
                if len(rows) == limit:
                    return rows, _encode_cursor(user.seq, k)
                rows.append((user.userid, depts[k]))
            skip = 0
            i += 1
        return rows, ""

    def follow_pairs_page(self, userids: list[str], cursor: str, limit: int):
        """One externalcontact/batch/get_by_user page over every (member, contact) relation of the given
        members, in the given order. Returns (follows, next_cursor) or None for a bad cursor."""
        if cursor:
            position = decode_cursor(cursor, 2)
            if position is None:
                return None
            i, j = position
        else:
            i, j = 0, 0
        out: list[Follow] = []
        while i < len(userids):
            user = self.users.get(userids[i])
            follows = (user.follows or []) if user is not None else []
            while j < len(follows):
                if len(out) == limit:
                    return out, _encode_cursor(i, j)
                out.append(follows[j])
                j += 1
            i += 1
            j = 0
        return out, ""

    # ---------------------------------------------------------------- JSON shapes
    def user_json(self, user: User, sensitive: bool = True) -> dict:
        """The member as user/get and user/list answer it."""
        data = {
            "userid": user.userid,
            "name": user.name,
            "department": list(user.departments),
            "order": [0] * len(user.departments),
            "position": user.position,
            "is_leader_in_dept": list(user.leader_in),
            "direct_leader": user.direct_leader,
            "status": user.status,
            "main_department": user.main_department,
            "alias": user.alias,
            "extattr": {"attrs": []},
        }
        if sensitive:
            avatar = user.avatar
            data.update(mobile=user.mobile, gender=user.gender, email=user.email, biz_mail=user.biz_mail,
                        avatar=avatar, thumb_avatar=avatar[:-2] + "/100" if avatar.endswith("/0") else avatar,
                        telephone=user.telephone,
                        address=user.address,
                        qr_code=f"{_QR_BASE}{_stable_hex(self.seed, user.n, length=16)}")
        return data

    @staticmethod
    def user_simple_json(user: User) -> dict:
        return {"userid": user.userid, "name": user.name, "department": list(user.departments),
                "open_userid": user.open_userid}

    @staticmethod
    def department_json(dept: Department) -> dict:
        return {"id": dept.id, "name": dept.name, "name_en": dept.name_en,
                "department_leader": [u.userid for u in dept.leaders], "parentid": dept.parentid,
                "order": dept.order}

    def contact_json(self, contact: ExternalContact) -> dict:
        data = {"external_userid": contact.external_userid, "name": contact.name, "type": contact.type,
                "avatar": f"{self.avatar_base}/ext{_stable_hex(self.seed, 'c', contact.n)}/0",
                "gender": contact.gender}
        if contact.type == 1:
            if contact.unionid:
                data["unionid"] = contact.unionid
        else:
            data.update(position=contact.position, corp_name=contact.corp_name,
                        corp_full_name=contact.corp_name + "有限公司")
        return data

    def follow_user_json(self, follow: Follow) -> dict:
        """A relation as externalcontact/get lists it under follow_user."""
        data = self._follow_common(follow)
        data["tags"] = [{"group_name": self.tags[t][0], "tag_name": self.tags[t][1], "tag_id": t, "type": 1}
                        for t in follow.tag_ids if t in self.tags]
        return data

    def follow_info_json(self, follow: Follow) -> dict:
        """A relation as batch/get_by_user gives it under follow_info."""
        data = self._follow_common(follow)
        data["tag_id"] = list(follow.tag_ids)
        return data

    @staticmethod
    def _follow_common(follow: Follow) -> dict:
        data = {"userid": follow.user.userid, "remark": follow.remark, "description": follow.description,
                "createtime": follow.createtime, "remark_mobiles": list(follow.remark_mobiles),
                "oper_userid": follow.user.userid, "add_way": follow.add_way}
        if follow.state:
            data["state"] = follow.state
        return data

    # ---------------------------------------------------------------- mutations (call under lock)
    def add_user(self, userid: str, name: str, departments: tuple[int, ...], position: str = "",
                 gender: str = "1", status: int = 1) -> User:
        user = User(self, self._next_n, self._next_seq, userid, name, departments, position, gender, status)
        self._next_n += 1
        self._index_new_user(user)
        return user

    def move_user(self, user: User, departments: tuple[int, ...]) -> None:
        for dept_id in user.departments:
            dept = self.departments.get(dept_id)
            if dept is not None and dept_id not in departments:
                dept.members.remove(user)
                if user in dept.leaders:
                    dept.leaders.remove(user)
        old = dict(zip(user.departments, user.leader_in, strict=True))
        for dept_id in departments:
            if dept_id not in user.departments:
                self.departments[dept_id].members.append(user)
        user.departments = departments
        user.leader_in = tuple(old.get(d, 0) for d in departments)
        if user.main_department not in departments:
            user.main_department = departments[0]

    def rename_user(self, user: User, new_userid: str) -> None:
        # The mailbox belongs to the person, not to the id: keep it when the id changes.
        for key in ("email", "biz_mail"):
            if user.extra is None or key not in user.extra:
                user.set_extra(key, getattr(user, key))
        del self.users[user.userid]
        self._users_lower.pop(user.userid.lower(), None)
        user.userid = new_userid
        self.users[new_userid] = user
        self._users_lower[new_userid.lower()] = user

    def remove_user(self, user: User) -> None:
        del self.users[user.userid]
        self._users_lower.pop(user.userid.lower(), None)
        i = bisect_left(self._roster_seqs, user.seq)
        del self._roster[i]
        del self._roster_seqs[i]
        for dept_id in user.departments:
            dept = self.departments[dept_id]
            dept.members.remove(user)
            if user in dept.leaders:
                dept.leaders.remove(user)
        for follow in user.follows or ():
            contact = follow.contact
            contact.followers.remove(follow)
            if not contact.followers:
                del self.external_contacts[contact.external_userid]
        user.follows = None

    def add_department(self, dept_id: int, name: str, name_en: str, parentid: int, order: int) -> Department:
        parent = self.departments[parentid]
        dept = Department(dept_id, name, name_en, parentid, order, parent.depth + 1)
        self.departments[dept_id] = dept
        parent.children.append(dept_id)
        self._sort_children(parent)
        return dept

    def move_department(self, dept: Department, parentid: int) -> None:
        self.departments[dept.parentid].children.remove(dept.id)
        parent = self.departments[parentid]
        parent.children.append(dept.id)
        self._sort_children(parent)
        dept.parentid = parentid
        for node in self.subtree(dept.id):
            node.depth = self.departments[node.parentid].depth + 1

    def remove_department(self, dept: Department) -> None:
        self.departments[dept.parentid].children.remove(dept.id)
        del self.departments[dept.id]

    def _sort_children(self, parent: Department) -> None:
        departments = self.departments
        parent.children.sort(key=lambda i: (-departments[i].order, i))

    def max_depth_below(self, dept_id: int) -> int:
        """How many levels the subtree rooted at dept_id spans (1 for a leaf)."""
        base = self.departments[dept_id].depth
        return max(d.depth for d in self.subtree(dept_id)) - base + 1

    def next_department_id(self) -> int:
        return max(self.departments) + 1

    def stats(self) -> dict:
        depths = [d.depth for d in self.departments.values()]
        return {"users": len(self.users), "departments": len(self.departments), "max_depth": max(depths),
                "external_contacts": len(self.external_contacts),
                "memberships": sum(len(u.departments) for u in self._roster)}


def _depth_counts(total: int) -> list[int]:
    """How many departments to create at depth 2, 3, … so the tree is broad near the top, mostly
    3–6 levels deep, with a thin tail for large corps and never deeper than WeCom's 15 levels."""
    rest = total - 1
    if rest <= 0:
        return []
    top = min(rest, max(2, min(30, round(total ** 0.5 * 0.7))))
    shares = [0.12, 0.30, 0.28, 0.16, 0.08, 0.03, 0.015, 0.008, 0.004, 0.002, 0.001, 0.0005, 0.0005]
    # Small companies are shallow: a ten-department firm does not have six levels.
    deepest = 15
    for limit, depth in ((10, 3), (30, 4), (100, 5), (500, 7), (2000, 10)):
        if total <= limit:
            deepest = depth
            break
    shares = shares[: deepest - 2]
    remaining = rest - top
    raw = [remaining * s / sum(shares) for s in shares]
    counts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: remaining - sum(counts)]:
        counts[i] += 1
    counts = [top] + counts
    # A level can only exist below a non-empty level: fold orphans upward.
    for i in range(1, len(counts)):
        if counts[i - 1] == 0 and counts[i]:
            j = i - 1
            while j > 0 and counts[j - 1] == 0:
                j -= 1
            counts[j] += counts[i]
            counts[i] = 0
    while counts and counts[-1] == 0:
        counts.pop()
    return counts


def _department_name(rng: random.Random, depth: int, family: int, k: int, used: set[str]) -> tuple[str, str]:
    fam_zh, fam_en, subs = _FAMILY_ROWS[family]
    if depth == 2:
        suffix_zh, suffix_en = _TOP_SUFFIXES[(k // len(_FAMILIES)) % len(_TOP_SUFFIXES)]
        stem_zh, stem_en = fam_zh, fam_en
    else:
        stem_zh, stem_en, _ = rng.choice(subs)
        suffix_zh, suffix_en = _DEPTH_SUFFIXES.get(depth, ("小组", "Squad"))
    name, name_en = stem_zh + suffix_zh, f"{stem_en} {suffix_en}"
    number = 1
    while name in used:
        number += 1
        numeral = _NUMERALS[number - 1] if number <= 10 else str(number)
        name, name_en = f"{stem_zh}{numeral}{suffix_zh}", f"{stem_en} {suffix_en} {number}"
    used.add(name)
    return name, name_en


def _ensure_duplicates(names: list[tuple[str, str]]) -> None:
    """Same-name colleagues are a fact of life in Chinese companies; make sure there are some."""
    counts: dict[str, int] = {}
    for name, _ in names:
        counts[name] = counts.get(name, 0) + 1
    shared = sum(1 for c in counts.values() if c > 1)
    if shared >= 2:
        return
    # Deterministic positions far apart, so the twins usually land in different departments.
    n = len(names)
    names[n - 1] = names[0]
    names[n // 2] = names[1] if names[1][0] != names[0][0] else names[2]
