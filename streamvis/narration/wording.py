"""The words: news (arrivals, departures, something approaching, hazards) and summaries (counts per class and
position) at three verbosity levels, each with the facts it states, so that "did we say this already?" compares
facts, not word sets. Pure functions of the scene model's events and objects.

    brief     "Careful: car approaching, right."  "Person ahead."          "3 people, 1 car."  "Sign ahead: STOP."
    normal    "Careful: car approaching on the right."  "Person on the left: 3 people in view."
              "In view: three people ahead, one close; a car on the right."  "Bus on the left: 65745."
    detailed  the same, with distances and motion for everything ("far away", "moving away", "crossing").
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from streamvis.narration.scene_model import Event, Key, TrackedObject

LEVELS = ("brief", "normal", "detailed")
Fact = tuple[object, ...]

# the detector's class names as a listener would say them
SPOKEN = {"tvmonitor": "TV", "diningtable": "table", "pottedplant": "potted plant", "aeroplane": "airplane",
          "motorbike": "motorbike", "sofa": "sofa", "hair drier": "hair dryer", "cell phone": "phone"}
_IRREGULAR = {"person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "skis",
              "scissors": "scissors", "broccoli": "broccoli"}
_NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]


def spoken(name: str) -> str:
    return SPOKEN.get(name, name)


def plural(name: str) -> str:
    head, _, last = name.rpartition(" ")
    if last in _IRREGULAR:
        word = _IRREGULAR[last]
    elif last.endswith(("s", "x", "ch", "sh")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def counted(n: int, name: str, digits: bool = False) -> str:
    """`a car`, `two people` (`2 people` with digits)."""
    name = spoken(name)
    if n == 1:
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name}" if not digits else f"1 {name}"
    number = str(n) if digits or n >= len(_NUMBERS) else _NUMBERS[n]
    return f"{number} {plural(name)}"


def _where(side: str, brief: bool = False) -> str:
    if brief:
        return side
    return "ahead" if side == "ahead" else f"on the {side}"


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".") if text else ""


_MOTION = {"approaching": "approaching", "receding": "moving away", "crossing": "crossing", "still": ""}


@dataclass(frozen=True)
class Utterance:
    """What to say, at each verbosity level (an empty text: nothing at that level), and what it states."""

    texts: dict[str, str]
    urgent: bool = False
    facts: frozenset[Fact] = frozenset()
    tracks: tuple[Key, ...] = ()  # the objects it mentions
    kinds: tuple[str, ...] = field(default=())  # enter, exit, approach, hazard, summary

    def text(self, level: str) -> str:
        return self.texts.get(level, "")

    @property
    def leading(self) -> bool:
        """Whether it holds news that goes before text read aloud: a hazard or a near arrival."""
        return self.urgent or "near-enter" in self.kinds

    @property
    def empty(self) -> bool:
        return not any(self.texts.values())


def _without_swaps(events: list[Event]) -> list[Event]:
    """An exit and an entry of the same class on the same side in one batch are one object the tracker lost and
    found again (a new id): neither is news."""
    kept = list(events)
    for exit_ in [e for e in events if e.kind == "exit"]:
        twin = next((e for e in kept if e.kind == "enter" and e.name == exit_.name and e.side == exit_.side), None)
        if twin is not None:
            kept.remove(twin)
            kept.remove(exit_)
    return kept


def _group(events: list[Event]) -> list[tuple[Event, int]]:
    """Events of one kind, class, side and motion counted together, in the order of their first."""
    groups: dict[tuple[str, str, str, str, str, str], list[Event]] = {}
    for e in events:
        groups.setdefault((e.kind, e.name, e.side, e.distance if e.kind == "hazard" else "", e.motion, e.said),
                          []).append(e)
    return [(members[0], len(members)) for members in groups.values()]


def _hazard(e: Event, n: int, level: str) -> str:
    what = counted(n, e.name) if n > 1 else spoken(e.name)
    if e.motion == "approaching":
        return f"careful: {what} approaching{', ' if level == 'brief' else ' '}{_where(e.side, level == 'brief')}"
    return f"careful: {what} close, {_where(e.side, level == 'brief')}"


def news(events: list[Event], in_view: list[TrackedObject]) -> Utterance:
    """One utterance for the news (most important first), at every level."""
    totals = Counter(o.name for o in in_view)
    texts: dict[str, list[str]] = {level: [] for level in LEVELS}
    grouped = _group(_without_swaps(sorted(events, key=lambda e: (e.priority, e.t))))
    last_arrival = {e.name: i for i, (e, _) in enumerate(grouped) if e.kind == "enter"}  # where the total goes
    for index, (e, n) in enumerate(grouped):
        if e.kind == "hazard":
            for level in LEVELS:
                texts[level].append(_hazard(e, n, level))
            continue
        what = counted(n, e.name) if n > 1 else spoken(e.name)
        if e.kind == "text":
            said = e.said.strip().rstrip(".")
            texts["brief"].append(f"{what} {_where(e.side, True)}: {said}")
            texts["normal"].append(f"{what} {_where(e.side)}: {said}")
            distance = {"near": ", close", "far": ", far away"}.get(e.distance, "")
            texts["detailed"].append(f"{what} {_where(e.side)}{distance}: {said}")
        elif e.kind == "enter":
            close = ", close" if e.distance == "near" else ""
            far = ", far away" if e.distance == "far" else ""
            motion = f", {_MOTION[e.motion]}" if _MOTION[e.motion] else ""
            total = totals[e.name]
            count = f": {counted(total, e.name)} in view" if total > n and last_arrival[e.name] == index else ""
            texts["brief"].append(f"{what} {_where(e.side, True)}{close}")
            texts["normal"].append(f"{what} {_where(e.side)}{close}{count}")
            texts["detailed"].append(f"{what} {_where(e.side)}{close}{far}{motion}{count}")
        elif e.kind == "approach":
            texts["normal"].append(f"{what} approaching {_where(e.side)}")
            texts["detailed"].append(f"{what} approaching {_where(e.side)}")
        elif e.kind == "exit":
            left = totals[e.name]
            still = f", {counted(left, e.name)} still in view" if left else ""
            texts["normal"].append(f"{what} gone from the {e.side}" if e.side != "ahead" else f"{what} gone")
            texts["detailed"].append((f"{what} gone from the {e.side}" if e.side != "ahead" else f"{what} gone")
                                     + still)
    return Utterance({level: " ".join(_sentence(p) for p in parts) for level, parts in texts.items()},
                     urgent=any(e.kind == "hazard" for e in events),
                     facts=frozenset((e.kind, e.key) for e in events), tracks=tuple(e.key for e in events),
                     kinds=tuple(sorted({e.kind for e in events}
                                        | ({"near-enter"} if any(e.priority <= 1 for e in events) else set()))))


def summary(in_view: list[TrackedObject]) -> Utterance:
    """What is in view, counted per class and side ("three people ahead, one close"), hazards first."""
    if not in_view:
        return Utterance({level: "" for level in LEVELS}, kinds=("summary",))
    by_class: dict[str, list[TrackedObject]] = {}
    for obj in in_view:  # already hazards first, then nearest
        by_class.setdefault(obj.name, []).append(obj)
    brief, normal, detailed = [], [], []
    facts: set[Fact] = set()
    for name, objs in by_class.items():
        brief.append(counted(len(objs), name, digits=True))
        sides = Counter(o.side for o in objs)
        places = []
        for side, n in sides.most_common():
            near = sum(1 for o in objs if o.side == side and o.distance == "near")
            close = "" if not near else (", close" if near == n == 1 else f", {_NUMBERS[min(near, 12)]} close")
            places.append((side, n, close))
            facts.add(("count", name, side, n, near))
        if len(places) == 1:
            side, n, close = places[0]
            normal.append(f"{counted(n, name)} {_where(side)}{close}")
        else:
            normal.append(f"{counted(len(objs), name)}: " + ", ".join(f"{_NUMBERS[min(n, 12)]} {_where(side)}"
                                                                         for side, n, _ in places))
        moving = Counter(_MOTION[o.motion] for o in objs if _MOTION[o.motion])
        far = sum(1 for o in objs if o.distance == "far")
        extra = [f"{_NUMBERS[min(k, 12)]} {m}" for m, k in moving.items()]
        if far:
            extra.append(f"{_NUMBERS[min(far, 12)]} far away")
        detailed.append(normal[-1] + (f" ({', '.join(extra)})" if extra else ""))
    return Utterance({"brief": _sentence(", ".join(brief)),
                      "normal": _sentence("In view: " + "; ".join(normal)),
                      "detailed": _sentence("In view: " + "; ".join(detailed))},
                     facts=frozenset(facts), tracks=tuple(o.key for o in in_view), kinds=("summary",))


def clean_text(text: str) -> str:
    """One line of speakable text: special tokens, control characters and extra spaces removed."""
    text = re.sub(r"<[^<>\s]{1,40}>", " ", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split()).strip()
