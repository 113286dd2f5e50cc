"""Synthetic fashion data in the Fashion-Gen HDF5 schema: the embedded default data set.

Products are drawn procedurally with PIL: 8 categories x 3 sub-categories with distinct
silhouettes, a colour, a pattern and optional part-level details (collar, pockets, zip, ...)
drawn at known places. Every drawn part has its own flat colour (distinct from the body and from
the product's other parts) and the description names it right before the part word ("a red
collar, white buttons down the front"), in random order. So which part word follows a colour
word can only be read off the image at that part; a fixed adjective ("a pointed collar") would
tell it from the text alone. Telling a product from others of its own sub-category needs these
fine-grained attributes, and a side file ``<out>.parts.json`` records the pixel box and colour
of every part word (ground truth for alignments). Each product has several poses (shift, scale,
flip, lighting) sharing one product id. Same arguments => byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kaleido.atomic import atomic_file

SIZE = 256
PARTS_FORMAT = "kaleido-synth-parts/1"
VERSION = 2  # bumped whenever the same arguments draw different data (2: coloured, named parts)

COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30), "navy": (25, 40, 95), "blue": (40, 90, 200), "sky blue": (115, 170, 225),
    "red": (195, 30, 40), "burgundy": (110, 20, 42), "pink": (232, 130, 170), "orange": (235, 120, 30),
    "yellow": (236, 200, 40), "green": (40, 140, 60), "olive": (110, 112, 40), "teal": (20, 130, 130),
    "brown": (110, 70, 40), "beige": (196, 174, 132), "grey": (128, 128, 134), "purple": (110, 50, 140),
}
PATTERNS = ("solid", "striped", "polka-dot", "checked")
SOLES = {"white": (242, 242, 238), "black": (30, 30, 30), "gum": (168, 110, 60)}
# Flat colours of the parts, named in the description. "gum" is only a sole's (its slot picks it).
PART_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (244, 244, 240), "black": (26, 26, 28), "red": (212, 30, 36), "yellow": (246, 212, 36),
    "green": (30, 152, 60), "blue": (34, 82, 214), "pink": (242, 122, 184), "orange": (246, 132, 20),
    "brown": (118, 66, 32), "grey": (138, 138, 144), "purple": (124, 44, 164), "gold": (212, 170, 50),
    "gum": SOLES["gum"],
}
MIN_COLOUR_DISTANCE = 100.0  # RGB distance between a part and the body or another part of the product
METAL = (205, 172, 70)
SHADOW = (45, 42, 40)
LEATHER = (70, 45, 28)
BRANDS = ("NORDVIK", "ATELIER MARLOWE", "KAITO", "BELLAMY & CO", "OSTRA", "VERDANT", "MAISON LUNE",
          "HALDEN", "RIVA", "STUDIO NOA")
SEASONS = ("SS2017", "FW2017", "SS2018", "FW2018")

Pt = tuple[float, float]


def mirror(points: Sequence[Pt]) -> list[Pt]:
    """The same shape reflected about the product's vertical centre line."""
    return [(1.0 - u, v) for u, v in points]


def mirror_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    return (1.0 - box[2], box[1], 1.0 - box[0], box[3])


def zigzag(u0: float, u1: float, v0: float, v1: float, n: int) -> list[Pt]:
    """Criss-cross lacing between two rails."""
    pts: list[Pt] = []
    for k in range(n + 1):
        v = v0 + (v1 - v0) * k / n
        pts.append((u0, v) if k % 2 == 0 else (u1, v))
    return pts


def arc(cu: float, cv: float, ru: float, rv: float, a0: float, a1: float, n: int = 16) -> list[Pt]:
    """Points on an elliptical arc (angles in degrees, 0 = right, 90 = down)."""
    angles = np.radians(np.linspace(a0, a1, n))
    return [(cu + ru * float(np.cos(a)), cv + rv * float(np.sin(a))) for a in angles]


@dataclass
class Shape:
    """The drawing of one product in unit coordinates (u right, v down, both in [0, 1]).

    ``items`` are (paint, primitive, part word or None, instance). Paint "body" is filled with the
    product's patterned colour; the others are flat colours. ``phrases`` are the description
    phrases of the drawn parts, each containing its part word.
    """

    items: list[tuple[str, tuple, str | None, int]] = field(default_factory=list)
    phrases: list[tuple[str, str]] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)  # closing sentences naming no located part
    colours: dict[str, str] = field(default_factory=dict)  # part word -> colour fixed by a slot

    def add(self, paint: str, *prims: tuple, part: str | None = None, instance: int = 0) -> None:
        for prim in prims:
            self.items.append((paint, prim, part, instance))

    def part(self, word: str, phrase: str, colour: str | None = None) -> str:
        """Declare a drawn part; ``phrase`` is its determiner and word (plus any words after it,
        "buttons down the front"); the description puts its colour before the word. ``colour``
        fixes that colour (a sole's slot), else one is drawn per product."""
        if word not in phrase.split():  # the word must be findable in the text
            raise ValueError(f"part word {word!r} is not a word of its phrase {phrase!r}")
        if colour is not None and colour not in PART_COLOURS:
            raise ValueError(f"part colour {colour!r} is not one of {sorted(PART_COLOURS)}")
        self.phrases.append((word, phrase))
        if colour is not None:
            self.colours[word] = colour
        return word


def poly(points: Iterable[Pt]) -> tuple:
    return ("poly", list(points))


def rect(u1: float, v1: float, u2: float, v2: float) -> tuple:
    return ("rect", (u1, v1, u2, v2))


def ellipse(u1: float, v1: float, u2: float, v2: float) -> tuple:
    return ("ellipse", (u1, v1, u2, v2))


def line(points: Iterable[Pt], width: float) -> tuple:
    return ("line", list(points), width)


# -- silhouettes ------------------------------------------------------------------------------------
# Each drawer gets the product's slot values and returns its Shape. Body first, then parts.

def _sleeves(s: Shape, kind: str, left: float, top: float, named: bool, paint: str = "body") -> None:
    """Two sleeves hanging from the shoulders at u = left (and its mirror)."""
    if kind == "none":
        return
    if kind == "short":
        lft = [(left, top), (left, top + 0.24), (left - 0.14, top + 0.33), (left - 0.22, top + 0.2)]
    else:
        lft = [(left, top), (left, top + 0.22), (left - 0.12, 0.9), (left - 0.26, 0.88)]
    word = s.part("sleeves", "sleeves") if named else None
    if named:
        s.remarks.append(f"{kind.capitalize()}-sleeved.")
    s.add(paint, poly(lft), part=word, instance=0)
    s.add(paint, poly(mirror(lft)), part=word, instance=1)


def _buttons(s: Shape, u: float, v0: float, v1: float, n: int, word: str = "buttons",
             phrase: str | None = None) -> None:
    w = s.part(word, phrase or "buttons down the front")
    for k in range(n):
        v = v0 + (v1 - v0) * k / max(n - 1, 1)
        s.add("contrast", ellipse(u - 0.018, v - 0.018, u + 0.018, v + 0.018), part=w)


def _chest_pockets(s: Shape, n: int, v: float = 0.22) -> None:
    if n == 0:
        return
    w = s.part("pockets" if n == 2 else "pocket", "two pockets" if n == 2 else "a pocket")
    s.add("trim", rect(0.35, v, 0.45, v + 0.12), part=w, instance=0)
    if n == 2:
        s.add("trim", rect(0.55, v, 0.65, v + 0.12), part=w, instance=1)


def _tshirt(o: dict) -> Shape:
    s = Shape()
    s.add("body", poly([(0.3, 0.08), (0.42, 0.04), (0.58, 0.04), (0.7, 0.08), (0.7, 1.0), (0.3, 1.0)]))
    _sleeves(s, o["sleeves"], 0.3, 0.08, True)
    w = s.part("neckline", "a neckline")
    s.remarks.append("Crew neck." if o["neck"] == "crew" else "V-neck.")
    if o["neck"] == "crew":
        s.add("trim", ellipse(0.42, 0.01, 0.58, 0.1), part=w)
    else:
        s.add("trim", poly([(0.42, 0.04), (0.58, 0.04), (0.5, 0.22)]), part=w)
    _chest_pockets(s, o["pockets"])
    return s


def _shirt(o: dict) -> Shape:
    s = Shape()
    s.add("body", poly([(0.3, 0.08), (0.42, 0.04), (0.58, 0.04), (0.7, 0.08), (0.7, 1.0), (0.3, 1.0)]))
    _sleeves(s, o["sleeves"], 0.3, 0.08, True)
    w = s.part("collar", "a collar")
    col = [(0.41, 0.03), (0.5, 0.1), (0.4, 0.17)]
    s.add("trim", poly(col), part=w, instance=0)
    s.add("trim", poly(mirror(col)), part=w, instance=0)
    if o["buttons"]:
        _buttons(s, 0.5, 0.16, 0.92, 6)
    _chest_pockets(s, o["pockets"])
    if o["sleeves"] == "long" and o["cuffs"]:
        w = s.part("cuffs", "cuffs")
        cuff = [(0.18, 0.8), (0.04, 0.78), (0.02, 0.88), (0.16, 0.9)]
        s.add("trim", poly(cuff), part=w, instance=0)
        s.add("trim", poly(mirror(cuff)), part=w, instance=1)
    return s


def _sweater(o: dict) -> Shape:
    s = Shape()
    s.add("body", poly([(0.28, 0.14), (0.72, 0.14), (0.72, 0.92), (0.28, 0.92)]))
    _sleeves(s, "long", 0.28, 0.14, False)
    w = s.part("hem", "a hem")
    s.add("trim", rect(0.28, 0.9, 0.72, 1.0), part=w)
    if o["hood"]:
        w = s.part("hood", "a hood")
        s.add("trim", ellipse(0.36, 0.0, 0.64, 0.24), part=w)
        s.add("shadow", ellipse(0.42, 0.06, 0.58, 0.22), part=w)
    else:
        s.add("trim", ellipse(0.41, 0.09, 0.59, 0.19))
    if o["zip"]:
        w = s.part("zip", "a zip")
        s.add("metal", line([(0.5, 0.22), (0.5, 0.9)], 0.028), part=w)
    if o["pocket"]:
        w = s.part("pocket", "a pocket")
        s.add("trim", poly([(0.36, 0.62), (0.64, 0.62), (0.68, 0.86), (0.32, 0.86)]), part=w)
    if o["cuffs"]:
        w = s.part("cuffs", "cuffs")
        cuff = [(0.17, 0.8), (0.02, 0.78), (0.02, 0.88), (0.16, 0.9)]
        s.add("trim", poly(cuff), part=w, instance=0)
        s.add("trim", poly(mirror(cuff)), part=w, instance=1)
    return s


def _trousers(o: dict, leg: list[Pt], cuff_box: tuple[float, float, float, float]) -> Shape:
    s = Shape()
    s.add("body", poly(leg), poly(mirror(leg)))
    s.add("body", rect(leg[0][0], 0.0, 1.0 - leg[0][0], 0.08))
    if o.get("belt"):
        w = s.part("belt", "a belt")
        s.add("leather", rect(leg[0][0] - 0.01, 0.01, 1.01 - leg[0][0], 0.07), part=w)
        s.add("metal", rect(0.45, 0.0, 0.55, 0.08), part=w)
    else:
        w = s.part("waistband", "a waistband")
        s.add("trim", rect(leg[0][0], 0.0, 1.0 - leg[0][0], 0.08), part=w)
    if o.get("pockets"):
        w = s.part("pockets", "pockets")
        pk = [(leg[0][0], 0.08), (leg[0][0] + 0.13, 0.08), (leg[0][0], 0.22)]
        s.add("trim", poly(pk), part=w, instance=0)
        s.add("trim", poly(mirror(pk)), part=w, instance=1)
    if o.get("cuffs"):
        w = s.part("cuffs", "cuffs")
        s.add("trim", rect(*cuff_box), part=w, instance=0)
        s.add("trim", rect(*mirror_box(cuff_box)), part=w, instance=1)
    return s


def _jeans(o: dict) -> Shape:
    s = _trousers(o, [(0.15, 0.07), (0.5, 0.07), (0.5, 0.3), (0.44, 1.0), (0.25, 1.0), (0.15, 0.3)],
                  (0.25, 0.92, 0.44, 1.0))
    if o["ripped"]:
        w = s.part("patches", "patches at the knees")
        s.add("contrast", ellipse(0.25, 0.5, 0.4, 0.56), part=w, instance=0)
        s.add("contrast", ellipse(0.6, 0.5, 0.75, 0.56), part=w, instance=1)
    return s


def _chinos(o: dict) -> Shape:
    s = _trousers(o, [(0.17, 0.07), (0.5, 0.07), (0.49, 0.28), (0.47, 1.0), (0.19, 1.0)],
                  (0.19, 0.92, 0.47, 1.0))
    if o["pleats"]:
        w = s.part("pleats", "pleats")
        s.add("trim", line([(0.34, 0.08), (0.34, 0.3)], 0.024), part=w, instance=0)
        s.add("trim", line([(0.66, 0.08), (0.66, 0.3)], 0.024), part=w, instance=1)
    return s


def _shorts(o: dict) -> Shape:
    s = _trousers(o, [(0.12, 0.1), (0.5, 0.1), (0.49, 0.35), (0.47, 1.0), (0.05, 1.0)],
                  (0.05, 0.86, 0.47, 1.0))
    if o["drawstring"]:
        w = s.part("drawstring", "a drawstring")
        s.add("contrast", line([(0.47, 0.05), (0.44, 0.3)], 0.015), line([(0.53, 0.05), (0.56, 0.3)], 0.015),
              part=w)
    return s


def _sole(s: Shape, o: dict, box: tuple[float, float, float, float]) -> None:
    w = s.part("sole", "a sole", colour=o["sole"])
    s.add("sole", rect(*box), part=w)


def _sneakers(o: dict) -> Shape:
    s = Shape()
    s.add("body", poly([(0.03, 0.6), (0.1, 0.4), (0.38, 0.28), (0.55, 0.12), (0.72, 0.06), (0.8, 0.25),
                        (0.97, 0.5), (0.97, 0.8), (0.03, 0.8)]))
    _sole(s, o, (0.02, 0.78, 0.98, 1.0))
    if o["laces"]:
        w = s.part("laces", "laces")
        s.add("contrast", line(zigzag(0.4, 0.6, 0.3, 0.14, 4), 0.02), part=w)
    if o["toe"]:
        w = s.part("toe", "a toe cap")
        s.add("trim", poly([(0.03, 0.6), (0.1, 0.42), (0.22, 0.38), (0.22, 0.78), (0.03, 0.78)]), part=w)
    if o["heel"]:
        w = s.part("heel", "a heel tab")
        s.add("trim", poly([(0.8, 0.25), (0.97, 0.5), (0.97, 0.7), (0.86, 0.7)]), part=w)
    return s


def _boots(o: dict) -> Shape:
    s = Shape()
    s.add("body", poly([(0.45, 0.0), (0.85, 0.0), (0.85, 0.75), (0.95, 0.8), (0.95, 0.9), (0.05, 0.9),
                        (0.05, 0.75), (0.25, 0.62), (0.45, 0.55)]))
    _sole(s, o, (0.03, 0.88, 0.97, 0.96))
    if o["heel"]:
        w = s.part("heel", "a heel")
        s.add("sole", rect(0.72, 0.88, 0.95, 1.0), part=w)
    if o["laces"]:
        w = s.part("laces", "laces")
        s.add("contrast", line(zigzag(0.43, 0.53, 0.08, 0.52, 6), 0.02), part=w)
    if o["zip"]:
        w = s.part("zip", "a zip")
        s.add("metal", line([(0.78, 0.04), (0.78, 0.8)], 0.02), part=w)
    return s


def _sandals(o: dict) -> Shape:
    s = Shape()
    n = o["straps"]
    w = s.part("straps", "two straps" if n == 2 else "three straps")
    for k in range(n):
        u0 = 0.12 + k * (0.6 / n)
        s.add("body", line(arc(u0 + 0.1, 0.78, 0.1, 0.55, 180, 360, 12), 0.05), part=w, instance=k)
    _sole(s, o, (0.02, 0.76, 0.98, 0.9))
    if o["heel"]:
        w = s.part("heel", "a heel")
        s.add("sole", rect(0.78, 0.9, 0.96, 1.0), part=w)
    else:
        s.add("sole", rect(0.02, 0.9, 0.98, 0.95))
    if o["buckle"]:
        w = s.part("buckle", "a buckle")
        s.add("metal", rect(0.74, 0.3, 0.84, 0.45), part=w)
        s.add("body", line([(0.79, 0.78), (0.79, 0.25)], 0.05))
    return s


def _totes(o: dict) -> Shape:
    s = Shape()
    s.add("body", poly([(0.05, 0.4), (0.95, 0.4), (0.85, 1.0), (0.15, 1.0)]))
    w = s.part("handles", "two handles")
    s.add("trim", line(arc(0.33, 0.42, 0.12, 0.38, 180, 360), 0.035), part=w, instance=0)
    s.add("trim", line(arc(0.67, 0.42, 0.12, 0.38, 180, 360), 0.035), part=w, instance=1)
    if o["pocket"]:
        w = s.part("pocket", "a pocket")
        s.add("trim", rect(0.3, 0.58, 0.7, 0.85), part=w)
    if o["zip"]:
        w = s.part("zip", "a zip")
        s.add("metal", line([(0.1, 0.45), (0.9, 0.45)], 0.02), part=w)
    return s


def _backpacks(o: dict) -> Shape:
    s = Shape()
    w = s.part("straps", "straps")
    strap = [(0.2, 0.16), (0.08, 0.5), (0.04, 0.92)]
    s.add("trim", line(strap, 0.05), part=w, instance=0)
    s.add("trim", line(mirror(strap), 0.05), part=w, instance=1)
    s.add("body", rect(0.12, 0.12, 0.88, 1.0), ellipse(0.12, 0.04, 0.88, 0.24))
    if o["handle"]:
        w = s.part("handle", "a handle")
        s.add("trim", line(arc(0.5, 0.09, 0.1, 0.09, 180, 360, 10), 0.03), part=w)
    if o["pocket"]:
        w = s.part("pocket", "a pocket")
        s.add("trim", rect(0.24, 0.56, 0.76, 0.92), part=w)
    if o["zip"]:
        w = s.part("zip", "a zip")
        s.add("metal", line(arc(0.5, 0.36, 0.3, 0.14, 190, 350, 12), 0.02), part=w)
    return s


def _clutches(o: dict) -> Shape:
    s = Shape()
    s.add("body", rect(0.03, 0.22, 0.97, 1.0))
    w = s.part("flap", "a flap")
    s.add("trim", poly([(0.03, 0.22), (0.97, 0.22), (0.5, 0.68)]), part=w)
    if o["clasp"]:
        w = s.part("clasp", "a clasp")
        s.add("metal", ellipse(0.45, 0.58, 0.55, 0.76), part=w)
    if o["chain"]:
        w = s.part("chain", "a chain strap")
        s.add("metal", line(arc(0.5, 0.22, 0.4, 0.22, 180, 360, 14), 0.035), part=w)
    return s


def _dress(o: dict, outline: list[Pt], bodice: float) -> Shape:
    s = Shape()
    s.add("body", poly(outline))
    if o["sleeves"] == "none":
        s.remarks.append("Sleeveless.")
    else:
        _sleeves(s, o["sleeves"], bodice, 0.06, True)
    if o["collar"]:
        w = s.part("collar", "a collar")
        s.add("contrast", ellipse(0.4, 0.03, 0.5, 0.12), ellipse(0.5, 0.03, 0.6, 0.12), part=w)
    if o["belt"]:
        w = s.part("belt", "a belt")
        s.add("trim", rect(bodice - 0.01, 0.3, 1.01 - bodice, 0.36), part=w)
    if o["buttons"]:
        _buttons(s, 0.5, 0.12, 0.27, 3, phrase="buttons at the front")
    return s


def _shift(o: dict) -> Shape:
    return _dress(o, [(0.32, 0.05), (0.68, 0.05), (0.7, 0.3), (0.74, 1.0), (0.26, 1.0), (0.3, 0.3)], 0.32)


def _aline_dress(o: dict) -> Shape:
    return _dress(o, [(0.34, 0.05), (0.66, 0.05), (0.66, 0.35), (0.92, 1.0), (0.08, 1.0), (0.34, 0.35)], 0.34)


def _maxi(o: dict) -> Shape:
    return _dress(o, [(0.35, 0.04), (0.65, 0.04), (0.64, 0.3), (0.82, 1.0), (0.18, 1.0), (0.36, 0.3)], 0.35)


def _jacket_pockets(s: Shape, o: dict, v: float) -> None:
    if o["pockets"]:
        w = s.part("pockets", "pockets")
        s.add("trim", rect(0.31, v, 0.45, v + 0.06), part=w, instance=0)
        s.add("trim", rect(0.55, v, 0.69, v + 0.06), part=w, instance=1)


def _bomber(o: dict) -> Shape:
    s = Shape()
    s.add("body", rect(0.28, 0.08, 0.72, 0.88))
    _sleeves(s, "long", 0.28, 0.08, False)
    w = s.part("hem", "a hem")
    s.add("trim", rect(0.28, 0.88, 0.72, 1.0), part=w)
    w = s.part("collar", "a collar")
    s.add("trim", rect(0.38, 0.04, 0.62, 0.12), part=w)
    if o["zip"]:
        w = s.part("zip", "a zip")
        s.add("metal", line([(0.5, 0.12), (0.5, 0.9)], 0.028), part=w)
    _jacket_pockets(s, o, 0.55)
    return s


def _parka(o: dict) -> Shape:
    s = Shape()
    s.add("body", rect(0.29, 0.12, 0.71, 1.0))
    _sleeves(s, "long", 0.29, 0.12, False)
    if o["hood"]:
        w = s.part("hood", "a hood")
        s.add("trim", ellipse(0.35, 0.0, 0.65, 0.26), part=w)
        s.add("shadow", ellipse(0.41, 0.06, 0.59, 0.24), part=w)
    if o["zip"]:
        w = s.part("zip", "a zip")
        s.add("metal", line([(0.5, 0.2), (0.5, 0.98)], 0.028), part=w)
    if o["belt"]:
        w = s.part("drawstring", "a drawstring at the waist")
        s.add("contrast", line([(0.29, 0.5), (0.71, 0.5)], 0.024), part=w)
    _jacket_pockets(s, o, 0.62)
    return s


def _blazer(o: dict) -> Shape:
    s = Shape()
    s.add("body", rect(0.28, 0.06, 0.72, 0.96))
    _sleeves(s, "long", 0.28, 0.06, False)
    w = s.part("lapels", "lapels")
    lap = [(0.42, 0.05), (0.5, 0.45), (0.36, 0.28)]
    s.add("trim", poly(lap), part=w, instance=0)
    s.add("trim", poly(mirror(lap)), part=w, instance=1)
    if o["buttons"]:
        n = o["buttons"]
        _buttons(s, 0.5, 0.52, 0.62, n, word="button" if n == 1 else "buttons",
                 phrase="one button" if n == 1 else "two buttons")
    _jacket_pockets(s, o, 0.7)
    return s


def _skirt(o: dict, outline: list[Pt]) -> Shape:
    s = Shape()
    s.add("body", poly(outline))
    if o.get("belt"):
        w = s.part("belt", "a belt")
        s.add("leather", rect(outline[0][0] - 0.01, 0.0, outline[1][0] + 0.01, 0.08), part=w)
    else:
        w = s.part("waistband", "a waistband")
        s.add("trim", rect(outline[0][0], 0.0, outline[1][0], 0.08), part=w)
    if o.get("buttons"):
        _buttons(s, 0.5, 0.14, 0.5, 4, phrase="buttons down the front")
    return s


def _pencil(o: dict) -> Shape:
    s = _skirt(o, [(0.25, 0.08), (0.75, 0.08), (0.78, 0.4), (0.72, 1.0), (0.28, 1.0), (0.22, 0.4)])
    if o["slit"]:
        w = s.part("slit", "a slit")
        s.add("shadow", poly([(0.48, 0.72), (0.52, 0.72), (0.56, 1.0), (0.44, 1.0)]), part=w)
    return s


def _aline_skirt(o: dict) -> Shape:
    s = _skirt(o, [(0.3, 0.08), (0.7, 0.08), (0.95, 1.0), (0.05, 1.0)])
    if o["pockets"]:
        w = s.part("pockets", "pockets")
        s.add("trim", line([(0.3, 0.12), (0.24, 0.35)], 0.03), part=w, instance=0)
        s.add("trim", line([(0.7, 0.12), (0.76, 0.35)], 0.03), part=w, instance=1)
    return s


def _pleated(o: dict) -> Shape:
    s = _skirt(o, [(0.3, 0.08), (0.7, 0.08), (0.95, 1.0), (0.05, 1.0)])
    w = s.part("pleats", "pleats")
    for k in range(o["pleats"]):
        t = (k + 1) / (o["pleats"] + 1)
        s.add("trim", line([(0.3 + 0.4 * t, 0.1), (0.05 + 0.9 * t, 0.98)], 0.025), part=w, instance=k)
    return s


def _caps(o: dict) -> Shape:
    s = Shape()
    s.add("body", poly(arc(0.42, 0.78, 0.34, 0.74, 180, 360, 20)), rect(0.08, 0.7, 0.76, 0.8))
    w = s.part("brim", "a brim")
    s.add("trim", poly([(0.6, 0.7), (0.9, 0.74), (1.0, 0.88), (0.62, 0.92)]), part=w)
    if o["button"]:
        w = s.part("button", "a button")
        s.add("trim", ellipse(0.38, 0.0, 0.46, 0.08), part=w)
    if o["patch"]:
        w = s.part("patch", "a patch")
        s.add("contrast", rect(0.3, 0.32, 0.52, 0.56), part=w)
    if o["strap"]:
        w = s.part("strap", "a strap")
        s.add("leather", rect(0.06, 0.6, 0.16, 0.8), part=w)
    return s


def _beanies(o: dict) -> Shape:
    s = Shape()
    s.add("body", poly(arc(0.5, 0.7, 0.4, 0.52, 180, 360, 20)), rect(0.1, 0.7, 0.9, 1.0))
    if o["cuff"]:
        w = s.part("cuff", "a cuff")
        s.add("trim", rect(0.08, 0.7, 0.92, 1.0), part=w)
    if o["pompom"]:
        w = s.part("pompom", "a pompom")
        s.add("contrast", ellipse(0.38, 0.0, 0.62, 0.24), part=w)
    return s


def _fedoras(o: dict) -> Shape:
    s = Shape()
    s.add("body", poly([(0.25, 0.78), (0.3, 0.12), (0.5, 0.22), (0.7, 0.12), (0.75, 0.78)]))
    w = s.part("brim", "a brim")
    s.add("body", ellipse(0.0, 0.66, 1.0, 0.96), part=w)
    if o["band"]:
        w = s.part("band", "a band")
        s.add("shadow", rect(0.26, 0.56, 0.74, 0.7), part=w)
    if o["feather"]:
        w = s.part("feather", "a feather")
        s.add("contrast", ellipse(0.66, 0.36, 0.76, 0.62), part=w)
    return s


@dataclass(frozen=True)
class SubCategory:
    """A sub-category: its silhouette drawer, box aspect (width, height) and attribute slots."""

    category: str
    name: str
    noun: str
    department: str
    aspect: tuple[float, float]
    materials: tuple[str, ...]
    slots: dict[str, tuple]
    draw: Callable[[dict], Shape]
    women_only: bool = False


_B = (False, True)
_DRESS_SLOTS = {"sleeves": ("none", "short", "long"), "collar": _B, "belt": _B, "buttons": _B}
SUBCATEGORIES: tuple[SubCategory, ...] = (
    SubCategory("TOPS", "T-SHIRTS", "t-shirt", "CLOTHING", (1.0, 0.9), ("cotton", "jersey", "linen"),
                {"sleeves": ("short", "long"), "neck": ("crew", "v"), "pockets": (0, 1)}, _tshirt),
    SubCategory("TOPS", "SHIRTS", "shirt", "CLOTHING", (1.0, 0.95), ("cotton", "poplin", "linen"),
                {"sleeves": ("short", "long"), "buttons": _B, "pockets": (0, 1, 2), "cuffs": _B}, _shirt),
    SubCategory("TOPS", "SWEATERS", "sweater", "CLOTHING", (1.0, 0.9), ("wool", "cashmere", "cotton"),
                {"hood": _B, "zip": _B, "pocket": _B, "cuffs": _B}, _sweater),
    SubCategory("PANTS", "JEANS", "jeans", "CLOTHING", (0.7, 1.0), ("denim", "stretch denim"),
                {"belt": _B, "pockets": _B, "cuffs": _B, "ripped": _B}, _jeans),
    SubCategory("PANTS", "CHINOS", "chinos", "CLOTHING", (0.62, 1.0), ("cotton twill", "linen"),
                {"belt": _B, "pockets": _B, "cuffs": _B, "pleats": _B}, _chinos),
    SubCategory("PANTS", "SHORTS", "shorts", "CLOTHING", (0.85, 0.62), ("cotton", "linen", "denim"),
                {"belt": _B, "pockets": _B, "cuffs": _B, "drawstring": _B}, _shorts),
    SubCategory("SHOES", "SNEAKERS", "sneakers", "SHOES", (1.0, 0.5), ("leather", "canvas", "suede"),
                {"sole": tuple(SOLES), "laces": _B, "toe": _B, "heel": _B}, _sneakers),
    SubCategory("SHOES", "BOOTS", "boots", "SHOES", (0.8, 1.0), ("leather", "suede"),
                {"sole": tuple(SOLES), "heel": _B, "laces": _B, "zip": _B}, _boots),
    SubCategory("SHOES", "SANDALS", "sandals", "SHOES", (1.0, 0.45), ("leather", "suede"),
                {"sole": tuple(SOLES), "straps": (2, 3), "heel": _B, "buckle": _B}, _sandals),
    SubCategory("BAGS", "TOTE BAGS", "tote bag", "BAGS", (0.9, 1.0), ("leather", "canvas", "nylon"),
                {"pocket": _B, "zip": _B}, _totes),
    SubCategory("BAGS", "BACKPACKS", "backpack", "BAGS", (0.75, 1.0), ("leather", "canvas", "nylon"),
                {"handle": _B, "pocket": _B, "zip": _B}, _backpacks),
    SubCategory("BAGS", "CLUTCHES", "clutch", "BAGS", (1.0, 0.55), ("leather", "satin", "suede"),
                {"clasp": _B, "chain": _B}, _clutches),
    SubCategory("DRESSES", "SHIFT DRESSES", "shift dress", "CLOTHING", (0.8, 1.0),
                ("cotton", "crepe", "linen"), _DRESS_SLOTS, _shift, True),
    SubCategory("DRESSES", "A-LINE DRESSES", "A-line dress", "CLOTHING", (0.85, 1.0),
                ("cotton", "silk", "crepe"), _DRESS_SLOTS, _aline_dress, True),
    SubCategory("DRESSES", "MAXI DRESSES", "maxi dress", "CLOTHING", (0.62, 1.0),
                ("silk", "chiffon", "viscose"), _DRESS_SLOTS, _maxi, True),
    SubCategory("JACKETS & COATS", "BOMBERS", "bomber jacket", "CLOTHING", (1.0, 0.9),
                ("nylon", "satin", "wool"),
                {"zip": _B, "pockets": _B}, _bomber),
    SubCategory("JACKETS & COATS", "PARKAS", "parka", "CLOTHING", (1.0, 1.0), ("nylon", "cotton", "wool"),
                {"hood": _B, "zip": _B, "belt": _B, "pockets": _B}, _parka),
    SubCategory("JACKETS & COATS", "BLAZERS", "blazer", "CLOTHING", (1.0, 0.95), ("wool", "linen", "cotton"),
                {"buttons": (0, 1, 2), "pockets": _B}, _blazer),
    SubCategory("SKIRTS", "PENCIL SKIRTS", "pencil skirt", "CLOTHING", (0.72, 0.85),
                ("wool", "crepe", "cotton"),
                {"belt": _B, "buttons": _B, "slit": _B}, _pencil, True),
    SubCategory("SKIRTS", "A-LINE SKIRTS", "A-line skirt", "CLOTHING", (0.8, 0.75),
                ("cotton", "denim", "suede"),
                {"belt": _B, "buttons": _B, "pockets": _B}, _aline_skirt, True),
    SubCategory("SKIRTS", "PLEATED SKIRTS", "pleated skirt", "CLOTHING", (0.8, 0.8),
                ("silk", "wool", "satin"),
                {"belt": _B, "pleats": (3, 5, 7)}, _pleated, True),
    SubCategory("HATS", "CAPS", "cap", "ACCESSORIES", (1.0, 0.62), ("cotton", "wool", "corduroy"),
                {"button": _B, "patch": _B, "strap": _B}, _caps),
    SubCategory("HATS", "BEANIES", "beanie", "ACCESSORIES", (0.75, 0.8), ("wool", "cashmere", "acrylic"),
                {"cuff": _B, "pompom": _B}, _beanies),
    SubCategory("HATS", "FEDORAS", "fedora", "ACCESSORIES", (1.0, 0.62), ("felt", "straw", "wool"),
                {"band": _B, "feather": _B}, _fedoras),
)
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(s.category for s in SUBCATEGORIES))


# -- products and text ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Product:
    product_id: int
    sub: SubCategory
    colour: str
    pattern: str
    material: str
    slots: dict
    brand: str
    gender: str
    season: str
    name: str
    description: str
    part_colours: dict = field(default_factory=dict)  # part word -> PART_COLOURS name


def _distance(a: Sequence[int], b: Sequence[int]) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def _part_colours(shape: Shape, body: str, rng: np.random.Generator) -> dict[str, str]:
    """One colour per part word: a slot's fixed colour, else drawn at random among the colours far
    enough from the body's and from the parts' already chosen (nearest-free fallback)."""
    out = dict(shape.colours)
    taken = [COLOURS[body], *(PART_COLOURS[c] for c in out.values())]
    pool = [c for c in PART_COLOURS if c != "gum"]
    for word, _phrase in shape.phrases:
        if word in out:
            continue
        free = [c for c in pool if c not in out.values()]
        ok = [c for c in free if min(_distance(PART_COLOURS[c], t) for t in taken) >= MIN_COLOUR_DISTANCE]
        if not ok:  # very crowded product: the free colour farthest from everything taken
            ok = [max(free, key=lambda c: min(_distance(PART_COLOURS[c], t) for t in taken))]
        out[word] = ok[int(rng.integers(len(ok)))]
        taken.append(PART_COLOURS[out[word]])
    return out


def _coloured(word: str, phrase: str, colour: str) -> str:
    """The part's phrase with its colour right before the part word ("two pockets" -> "two red
    pockets"; "a" becomes "an" before a vowel)."""
    tokens = phrase.split()
    i = tokens.index(word)
    if i > 0 and tokens[i - 1] in ("a", "an"):
        tokens[i - 1] = "an" if colour[0] in "aeiou" else "a"
    return " ".join([*tokens[:i], colour, *tokens[i:]])


def _join(phrases: list[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _describe(sub: SubCategory, colour: str, pattern: str, material: str, shape: Shape,
              part_colours: dict[str, str], rng: np.random.Generator) -> str:
    """A short catalogue-style description naming colour, pattern and every drawn part with its
    colour, the parts in random order."""
    phrases = [_coloured(w, p, part_colours[w]) for w, p in shape.phrases]
    rng.shuffle(phrases)
    head = f"{colour} {pattern} {material} {sub.noun}"
    t = int(rng.integers(4))
    if t == 0:
        text = f"{head} with {_join(phrases)}." if phrases else f"{head}."
    elif t == 1:
        text = f"{pattern} {sub.noun} in {colour} {material}."
        text += f" Features {_join(phrases)}." if phrases else ""
    elif t == 2:
        half = (len(phrases) + 1) // 2
        first, rest = phrases[:half], phrases[half:]
        text = f"{head} with {_join(first)}." if first else f"{head}."
        if rest:
            text += f" {_join(rest)}."
    else:
        text = f"{colour} {sub.noun} in {pattern} {material}." + (f" {_join(phrases)}." if phrases else "")
        text += " " + ("Regular fit." if sub.department == "CLOTHING" else "Made in Italy.")
    text = " ".join([text, *shape.remarks])
    sentences = [s.strip() for s in text.split(". ")]
    return ". ".join(s[:1].upper() + s[1:] for s in sentences if s)


def _products(products: int, id_start: int, rng: np.random.Generator) -> list[Product]:
    """Draw every product's attributes; combinations are unique within a sub-category when possible."""
    order = rng.permutation(len(SUBCATEGORIES))
    seen: set[tuple] = set()
    out = []
    colours = list(COLOURS)
    for i in range(products):
        sub = SUBCATEGORIES[int(order[i % len(order)])]
        for _attempt in range(50):
            colour = colours[int(rng.integers(len(colours)))]
            pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
            slots = {k: v[int(rng.integers(len(v)))] for k, v in sub.slots.items()}
            key = (sub.name, colour, pattern, tuple(slots.values()))
            if key not in seen:
                break
        seen.add(key)
        material = sub.materials[int(rng.integers(len(sub.materials)))]
        shape = sub.draw(slots)
        part_colours = _part_colours(shape, colour, rng)
        desc = _describe(sub, colour, pattern, material, shape, part_colours, rng)
        gender = "WOMEN" if sub.women_only else ("MEN", "WOMEN")[int(rng.integers(2))]
        name = f"{colour} {pattern} {sub.noun}".title().replace("T-Shirt", "T-shirt")
        out.append(Product(100000 + id_start + i, sub, colour, pattern, material, slots,
                           BRANDS[int(rng.integers(len(BRANDS)))], gender,
                           SEASONS[int(rng.integers(len(SEASONS)))], name, desc, part_colours))
    return out


# -- rendering ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pose:
    """Where one image of a product lies: box origin and size in pixels, flip, lighting."""

    x0: float
    y0: float
    width: float
    height: float
    flip: bool
    light: float


def _poses(sub: SubCategory, n: int, rng: np.random.Generator) -> list[Pose]:
    aw, ah = sub.aspect
    size = float(rng.uniform(0.42, 0.9)) * SIZE
    out = []
    for k in range(n):
        s = size if k == 0 else size * float(rng.uniform(0.85, 1.12))
        s = min(s, 0.94 * SIZE)
        w, h = s * aw, s * ah
        x0 = float(rng.uniform(6, SIZE - 6 - w))
        y0 = float(rng.uniform(6, SIZE - 6 - h))
        flip = bool(rng.random() < 0.5) if k else False
        light = 1.0 if k == 0 else float(rng.uniform(0.85, 1.12))
        out.append(Pose(x0, y0, w, h, flip, light))
    return out


def _luma(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _paints(p: Product) -> dict[str, tuple[int, int, int]]:
    base = COLOURS[p.colour]
    dark = _luma(base) < 90
    trim = tuple(min(255, c + 55) for c in base) if dark else tuple(int(c * 0.62) for c in base)
    contrast = (238, 236, 230) if dark else (34, 34, 40)
    sole = SOLES.get(p.slots.get("sole", "white"), SOLES["white"])
    return {"trim": trim, "contrast": contrast, "metal": METAL, "shadow": SHADOW, "leather": LEATHER,
            "sole": sole}


def _texture(p: Product, pose: Pose) -> np.ndarray:
    """The patterned fabric over the whole canvas, anchored to the product box so poses agree."""
    base = np.array(COLOURS[p.colour], np.uint8)
    second = np.array(_paints(p)["contrast"], np.uint8)
    tex = np.empty((SIZE, SIZE, 3), np.uint8)
    tex[:] = base
    if p.pattern == "solid":
        return tex
    s = max(pose.width, pose.height)
    axis = np.arange(SIZE, dtype=np.float32)
    xs = ((axis - np.float32(pose.x0)) / np.float32(s))[None, :]  # broadcast, never a full grid
    ys = ((axis - np.float32(pose.y0)) / np.float32(s))[:, None]
    if p.pattern == "striped":
        on = np.broadcast_to(np.mod(ys, 0.07) < 0.025, (SIZE, SIZE))
    elif p.pattern == "polka-dot":
        on = (np.mod(xs, 0.08) - 0.04) ** 2 + (np.mod(ys, 0.08) - 0.04) ** 2 < 0.016**2
    else:  # checked
        on = (np.floor(xs / 0.09) + np.floor(ys / 0.09)) % 2 == 1
        tex[on] = (0.5 * base + 0.5 * second).astype(np.uint8)
        on = (np.mod(xs, 0.09) < 0.012) | (np.mod(ys, 0.09) < 0.012)
    tex[on] = second
    return tex


def _to_pixels(prim: tuple, pose: Pose) -> tuple:
    def pt(u: float, v: float) -> tuple[float, float]:
        if pose.flip:
            u = 1.0 - u
        return (pose.x0 + u * pose.width, pose.y0 + v * pose.height)

    kind = prim[0]
    if kind == "poly":
        return ("poly", [pt(u, v) for u, v in prim[1]])
    if kind == "line":
        return ("line", [pt(u, v) for u, v in prim[1]], max(1, round(prim[2] * max(pose.width, pose.height))))
    (x1, y1), (x2, y2) = pt(prim[1][0], prim[1][1]), pt(prim[1][2], prim[1][3])
    return (kind, (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))


def _draw(draw: ImageDraw.ImageDraw, prim: tuple, fill) -> None:
    kind = prim[0]
    if kind == "poly":
        draw.polygon(prim[1], fill=fill)
    elif kind == "line":
        draw.line(prim[1], fill=fill, width=prim[2], joint="curve")
    elif kind == "rect":
        draw.rectangle(prim[1], fill=fill)
    else:
        draw.ellipse(prim[1], fill=fill)


def render(p: Product, pose: Pose, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """One image of a product: (H, W, 3) uint8 RGB, (H, W) uint8 mask, and its part boxes."""
    shape = p.sub.draw(p.slots)
    items = [(paint, _to_pixels(prim, pose), part, inst) for paint, prim, part, inst in shape.items]
    paints = _paints(p)
    # A part is drawn flat in its named colour; its shading and metal fittings keep their own paint
    # when the part has other pieces (a hood's inner shadow, a belt's buckle).
    main = {part for paint, _prim, part, _inst in items if part and paint not in ("shadow", "metal")}

    def flat(paint: str, part: str | None) -> tuple[int, int, int] | None:
        if part and (part not in main or paint not in ("shadow", "metal")):
            return PART_COLOURS[p.part_colours[part]]
        return None if paint == "body" else paints[paint]

    body = Image.new("L", (SIZE, SIZE), 0)
    body_draw = ImageDraw.Draw(body)
    for paint, prim, part, _inst in items:
        if flat(paint, part) is None:
            _draw(body_draw, prim, 255)
    bg_level = float(rng.uniform(232, 255))
    bg = np.clip(bg_level + rng.uniform(-4, 4, size=3), 0, 255).astype(np.uint8)
    canvas = Image.new("RGB", (SIZE, SIZE), tuple(int(c) for c in bg))
    canvas.paste(Image.fromarray(_texture(p, pose)), mask=body)
    mask = body.copy()
    draw, mask_draw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    for paint, prim, part, _inst in items:
        colour = flat(paint, part)
        if colour is not None:
            _draw(draw, prim, colour)
            _draw(mask_draw, prim, 255)
    image = np.asarray(canvas).copy()
    m = np.asarray(mask) > 0
    if pose.light != 1.0:
        image[m] = np.clip(image[m].astype(np.float32) * pose.light, 0, 255).astype(np.uint8)
    # Exact part boxes: rasterise each instance of a part on its own.
    instances: dict[tuple[str, int], list[tuple]] = {}
    for _paint, prim, part, inst in items:
        if part:
            instances.setdefault((part, inst), []).append(prim)
    parts: dict[str, list[list[int]]] = {}
    scratch = Image.new("L", (SIZE, SIZE), 0)
    scratch_draw = ImageDraw.Draw(scratch)
    for (part, _inst), prims in instances.items():
        scratch_draw.rectangle((0, 0, SIZE, SIZE), fill=0)
        for prim in prims:
            _draw(scratch_draw, prim, 255)
        box = scratch.getbbox()
        if box is not None:
            parts.setdefault(part, []).append([int(c) for c in box])
    return image, (m.astype(np.uint8) * 255), parts


def _union(boxes: list[list[int]]) -> list[int]:
    a = np.array(boxes)
    return [int(a[:, 0].min()), int(a[:, 1].min()), int(a[:, 2].max()), int(a[:, 3].max())]


def write_synthetic(out: Path, products: int, seed: int, poses: tuple[int, int] = (1, 3), id_start: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``products`` synthetic products (each ``poses[0]..poses[1]`` images) to ``out``.

    The HDF5 file follows the Fashion-Gen schema (plus ``input_mask``, the foreground mask for
    saliency training); ``<out>.parts.json`` holds per row the product box and the box of every
    part word of its description. Product ids start at 100000 + ``id_start`` (give disjoint
    ranges to splits). ``progress(done, total)`` is called after each image. Both files are
    written under temporary names and renamed, so a reader never sees half a file.
    """
    import h5py

    out = Path(out)
    if products < 1:
        raise ValueError(f"products must be >= 1, got {products}")
    lo, hi = poses
    if not 1 <= lo <= hi:
        raise ValueError(f"poses must be (min, max) with 1 <= min <= max, got {poses}")
    rng = np.random.default_rng([seed, 0x5EED])
    items = _products(products, id_start, rng)
    counts = rng.integers(lo, hi + 1, size=products)
    n = int(counts.sum())
    out.parent.mkdir(parents=True, exist_ok=True)
    parts_file = parts_path(out)
    rows = [(p, k) for p, c in zip(items, counts, strict=True) for k in range(int(c))]

    def text(values: list[str]) -> np.ndarray:
        enc = [v.encode("utf-8") for v in values]
        return np.array(enc, dtype=f"S{max(len(e) for e in enc)}").reshape(-1, 1)

    fields = {
        "input_description": [p.description for p, _ in rows],
        "input_concat_description": [f"{p.name}. {p.description}" for p, _ in rows],
        "input_name": [p.name for p, _ in rows],
        "input_category": [p.sub.category for p, _ in rows],
        "input_subcategory": [p.sub.name for p, _ in rows],
        "input_department": [p.sub.department for p, _ in rows],
        "input_gender": [p.gender for p, _ in rows],
        "input_brand": [p.brand for p, _ in rows],
        "input_season": [p.season for p, _ in rows],
        "input_composition": [f"100% {p.material}" for p, _ in rows],
        "input_pose": [f"id_gridfs_{k + 1}" for _, k in rows],
    }
    side_rows = []
    # the parts file is renamed into place first, the HDF5 file (what callers test for) last
    with atomic_file(out) as tmp_h5, atomic_file(parts_file) as tmp_parts:
        with h5py.File(tmp_h5, "w", libver="earliest", track_order=False) as f:
            for key, values in fields.items():
                f.create_dataset(key, data=text(values), track_times=False)
            f.create_dataset("index", data=np.arange(n, dtype=np.int64).reshape(-1, 1), track_times=False)
            f.create_dataset("index_2", data=np.arange(n, dtype=np.int64).reshape(-1, 1), track_times=False)
            f.create_dataset("input_productID", data=np.array([p.product_id for p, _ in rows], np.int64)
                             .reshape(-1, 1), track_times=False)
            prices = {p.product_id: int(rng.integers(40, 1200)) for p in items}
            msrp = np.array([prices[p.product_id] for p, _ in rows], np.float64).reshape(-1, 1)
            f.create_dataset("input_msrpUSD", data=msrp, track_times=False)
            images = f.create_dataset("input_image", shape=(n, SIZE, SIZE, 3), dtype=np.uint8,
                                      chunks=(1, SIZE, SIZE, 3), compression="gzip", compression_opts=4,
                                      track_times=False)
            masks = f.create_dataset("input_mask", shape=(n, SIZE, SIZE), dtype=np.uint8,
                                     chunks=(1, SIZE, SIZE), compression="gzip", compression_opts=4,
                                     track_times=False)
            row = 0
            for p, c in zip(items, counts, strict=True):
                for k, pose in enumerate(_poses(p.sub, int(c), rng)):
                    image, mask, parts = render(p, pose, rng)
                    images[row] = image
                    masks[row] = mask
                    ys, xs = np.nonzero(mask)
                    side_rows.append({
                        "index": row, "product_id": str(p.product_id), "pose": f"id_gridfs_{k + 1}",
                        "product": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                        "parts": [{"word": w, "colour": p.part_colours[w], "box": _union(b), "boxes": b}
                                  for w, b in parts.items()],
                    })
                    row += 1
                    if progress is not None:
                        progress(row, n)
        side = {"format": PARTS_FORMAT, "image_size": SIZE, "seed": seed,
                "box": "x1, y1, x2, y2 in pixels, x2 and y2 exclusive", "rows": side_rows}
        tmp_parts.write_text(json.dumps(side, separators=(",", ":")) + "\n", encoding="utf-8")
    return out


def parts_path(h5_path: str | Path) -> Path:
    """The side file of part boxes beside a synthetic file: ``<file>.parts.json``."""
    path = Path(h5_path)
    return path.with_name(path.name + ".parts.json")


def read_parts(h5_path: Path) -> list[dict]:
    """The per-row part boxes written beside a synthetic file (``<file>.parts.json``)."""
    side = parts_path(h5_path)
    if not side.is_file():
        raise FileNotFoundError(f"{side}: no parts side file (only synthetic data has one)")
    data = json.loads(side.read_text(encoding="utf-8"))
    if data.get("format") != PARTS_FORMAT:
        raise ValueError(f"{side}: unknown format {data.get('format')!r}, expected {PARTS_FORMAT}")
    return data["rows"]
