"""Class tables of the face-parsing datasets, each defined once.

Every dataset adapter, metric, palette and the serving handler reads its classes from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LabelTable:
    name: str
    classes: tuple[str, ...]
    # Merged groups reported by the field (Helen: eyes / brows / mouth / overall).
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError:
            raise ValueError(f"class {name!r} is not in the {self.name} table {list(self.classes)}") from None

    def palette(self) -> np.ndarray:
        """(num_classes, 3) uint8 colours; background black."""
        return make_palette(self.num_classes)


# Official CelebAMask-HQ order (the order the parts are painted in, later parts on top).
CELEBAMASK_HQ = LabelTable(
    "celebamask-hq",
    ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
     "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"),
)

# LaPa's 11 classes (label ids 0..10 as published).
LAPA = LabelTable(
    "lapa",
    ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "i_mouth", "l_lip", "hair"),
)

# Helen (relabelled, Lin et al.): 11 classes; the merged groups are the field's reporting convention.
HELEN = LabelTable(
    "helen",
    ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "i_mouth", "l_lip", "hair"),
    groups={
        "eyes": ("l_eye", "r_eye"),
        "brows": ("l_brow", "r_brow"),
        "mouth": ("u_lip", "i_mouth", "l_lip"),
        "overall": ("l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "i_mouth", "l_lip"),
    },
)

TABLES: dict[str, LabelTable] = {t.name: t for t in (CELEBAMASK_HQ, LAPA, HELEN)}


def get_table(name: str) -> LabelTable:
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"unknown label table {name!r}; known: {sorted(TABLES)}") from None


def celebamask_to_lapa() -> np.ndarray:
    """Lookup array mapping CelebAMask-HQ ids to LaPa ids (accessories, ears, neck, cloth → background;
    CelebAMask-HQ 'mouth' is the inner mouth)."""
    lut = np.zeros(CELEBAMASK_HQ.num_classes, dtype=np.uint8)
    same = {"skin": "skin", "l_brow": "l_brow", "r_brow": "r_brow", "l_eye": "l_eye", "r_eye": "r_eye",
            "nose": "nose", "u_lip": "u_lip", "mouth": "i_mouth", "l_lip": "l_lip", "hair": "hair"}
    for src, dst in same.items():
        lut[CELEBAMASK_HQ.index(src)] = LAPA.index(dst)
    return lut


def make_palette(n: int) -> np.ndarray:
    """The PASCAL VOC bit-interleaved palette: distinct, stable colours for any class count."""
    pal = np.zeros((max(n, 1), 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal[:n]
