"""A grammar of Mandarin voice commands (home appliances, lighting, car), numbers spelled out.

`sample_sentence(rng)` draws one command; the templates cover actions x devices x rooms and
numbers, times, temperatures and percentages read the way a speaker says them.
"""

import random
from typing import Callable, List

DIGITS = "零一二三四五六七八九"

ROOMS = ["客厅", "卧室", "主卧", "次卧", "厨房", "书房", "卫生间", "餐厅", "阳台", "儿童房", "玄关", "车库"]
SWITCHABLE = ["灯", "吊灯", "台灯", "空调", "电视", "窗帘", "风扇", "加湿器", "除湿机", "热水器", "音响",
              "洗衣机", "扫地机器人", "空气净化器", "电饭煲", "地暖", "新风系统", "投影仪", "烤箱", "油烟机"]
ON = ["打开", "开启", "启动"]
OFF = ["关闭", "关掉", "关上", "停止"]
CAR_PARTS = ["车窗", "天窗", "主驾车窗", "副驾车窗", "后排车窗", "遮阳帘"]
CAR_DEVICES = ["座椅加热", "座椅通风", "方向盘加热", "雨刷", "氛围灯", "除雾", "导航", "蓝牙", "收音机", "行车记录仪"]
SEATS = ["主驾", "副驾", "后排", "左后", "右后"]
MODES = ["制冷模式", "制热模式", "除湿模式", "送风模式", "睡眠模式", "自动模式", "静音模式", "节能模式"]
COLORS = ["红色", "蓝色", "绿色", "紫色", "白色", "暖黄色", "橙色"]
PERIODS = ["早上", "上午", "中午", "下午", "晚上"]
DAYS = ["今天", "明天", "后天", "周一", "周二", "周三", "周四", "周五", "周六", "周日"]
POLITE = ["", "", "请", "帮我", "麻烦"]


def spell_number(n: int) -> str:
    """0..9999 as spoken Mandarin (二十六, 一百零五, 两千)."""
    if n < 10:
        return DIGITS[n]
    if n < 20:
        return "十" + (DIGITS[n % 10] if n % 10 else "")
    if n < 100:
        return DIGITS[n // 10] + "十" + (DIGITS[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        head = ("两" if n // 100 == 2 else DIGITS[n // 100]) + "百"
        if rest == 0:
            return head
        if rest < 10:
            return head + "零" + DIGITS[rest]
        tail = spell_number(rest)
        return head + ("一" + tail if rest < 20 else tail)
    head = ("两" if n // 1000 == 2 else DIGITS[n // 1000]) + "千"
    rest = n % 1000
    if rest == 0:
        return head
    return head + ("零" if rest < 100 else "") + spell_number(rest)


def _room_device(r: random.Random) -> str:
    return f"{r.choice(ROOMS)}{r.choice(['', '的'])}{r.choice(SWITCHABLE)}"


def _switch(r: random.Random) -> str:
    if r.random() < 0.5:
        return f"{r.choice(POLITE)}{r.choice(ON + OFF)}{_room_device(r)}"
    return f"{r.choice(POLITE)}把{_room_device(r)}{r.choice(['打开', '关掉', '关上', '关闭'])}"


def _temperature(r: random.Random) -> str:
    t = r.randint(16, 30)
    return f"{r.choice(POLITE)}把{r.choice(ROOMS)}空调{r.choice(['温度', ''])}调到{spell_number(t)}度"


def _percent(r: random.Random) -> str:
    p = r.choice(range(5, 101, 5))
    what = r.choice(["灯的亮度", "窗帘", "音量", "风扇风速", "加湿器湿度"])
    return f"把{r.choice(ROOMS)}{what}调到百分之{spell_number(p)}"


def _level(r: random.Random) -> str:
    return f"{r.choice(SEATS)}{r.choice(['座椅加热', '座椅通风', '风量'])}调到{spell_number(r.randint(1, 5))}档"


def _timer(r: random.Random) -> str:
    n = r.choice([1, 2, 3, 5, 10, 15, 20, 30, 40, 45, 60, 90])
    unit = r.choice(["分钟", "小时"]) if n <= 12 else "分钟"
    return f"{spell_number(n) if n != 2 else '两'}{'个' if unit == '小时' else ''}{unit}后{r.choice(OFF)}{_room_device(r)}"


def _alarm(r: random.Random) -> str:
    hour = r.randint(1, 12)
    minute = r.choice([0, 0, 10, 15, 20, 30, 30, 40, 45, 50])
    clock = f"{'两' if hour == 2 else spell_number(hour)}点"
    if minute == 30 and r.random() < 0.5:
        clock += "半"
    elif minute:
        clock += spell_number(minute) + ("分" if r.random() < 0.5 else "")
    task = r.choice(["叫我起床", f"{r.choice(ON)}{_room_device(r)}", f"{r.choice(OFF)}{_room_device(r)}", "提醒我开会"])
    return f"{r.choice(DAYS)}{r.choice(PERIODS)}{clock}{task}"


def _car(r: random.Random) -> str:
    choice = r.random()
    if choice < 0.4:
        return f"{r.choice(['打开', '关闭'])}{r.choice(CAR_PARTS)}"
    if choice < 0.6:
        return f"把{r.choice(CAR_PARTS)}打开百分之{spell_number(r.choice(range(10, 101, 10)))}"
    return f"{r.choice(POLITE)}{r.choice(ON + OFF)}{r.choice(CAR_DEVICES)}"


def _mode(r: random.Random) -> str:
    return f"把{r.choice(ROOMS)}空调切换到{r.choice(MODES)}"


def _color(r: random.Random) -> str:
    return f"把{r.choice(ROOMS)}的灯{r.choice(['调成', '换成', '变成'])}{r.choice(COLORS)}"


TEMPLATES: List[Callable[[random.Random], str]] = [
    _switch, _switch, _switch, _temperature, _percent, _level, _timer, _alarm, _car, _car, _mode, _color,
]


def sample_sentence(rng: random.Random) -> str:
    return rng.choice(TEMPLATES)(rng)
