"""How a fake corp is generated: the name, position, department and company tables, and the generation of a
realistic organisation (``Org.generate``).

Everything is deterministic by seed so that a failing test can be replayed, and fast enough that 100,000
members in 5,000 departments take a few seconds. Names follow Chinese frequencies, so same-name colleagues
appear as in real companies; departments form a tree broad near the top, mostly 3–6 levels deep and never
deeper than WeCom's 15 levels (https://developer.work.weixin.qq.com/document/path/90208); members sit mostly
in leaf teams; about a third of the active members have customers (外部联系人,
https://developer.work.weixin.qq.com/document/path/92114).
"""

from __future__ import annotations

import base64
import random
from itertools import accumulate
from typing import TYPE_CHECKING

from .orgmodel import Department, ExternalContact, Follow

if TYPE_CHECKING:
    from .org import Org


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


class OrgGeneration:
    """Org's generation half (a mixin of Org, org.py): builds departments, members and customers through
    Org's own mutation methods, so every index stays consistent."""

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
