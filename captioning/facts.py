"""Facts: one structured, JSON-ready record per image, built from the evidence a dataset brings.

Second step of the caption flow (evidence -> **facts** -> writer -> shards). Every fact records where it came
from: ``annotation`` (labels, votes or AU codes shipped with the dataset), ``estimate`` (a detector's reading) or
``prior`` (derived from the annotated emotion through FACS prototypes, used when a face brings no AU evidence).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional

from emocap import taxonomy

from .facs import ACTION_UNITS, EMOTION_PROTOTYPES, REGIONS, aus_for_region

PRIOR_AU_THRESHOLD = 0.25
SECONDARY_THRESHOLD = 0.2


@dataclass
class AUFact:
    intensity: float
    source: str  # annotation | estimate | prior

    def to_dict(self) -> dict:
        return {"intensity": round(float(self.intensity), 3), "source": self.source}


@dataclass
class Facts:
    """What is known about one face, with provenance."""

    distribution: Dict[str, float]
    dominant: str
    secondary: List[str]
    agreement: float
    intensity: str  # high | moderate | low
    ambiguous: bool
    aus: Dict[int, AUFact] = field(default_factory=dict)
    regions: Dict[str, List[int]] = field(default_factory=dict)
    sources: Dict[str, str] = field(default_factory=dict)
    votes: Optional[Dict[str, int]] = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["aus"] = {str(k): v.to_dict() for k, v in self.aus.items()}
        d["distribution"] = {k: round(float(v), 4) for k, v in self.distribution.items()}
        d["agreement"] = round(float(self.agreement), 4)
        return d


def _intensity_from_agreement(agreement: float) -> str:
    if agreement >= 0.8:
        return "high"
    if agreement >= 0.55:
        return "moderate"
    return "low"


def prior_aus(distribution: Mapping[str, float]) -> Dict[int, AUFact]:
    """AUs expected from an emotion distribution: the vote-weighted mix of the emotions' FACS prototypes."""
    mixed: Dict[int, float] = {}
    for emotion, p in distribution.items():
        for au, strength in EMOTION_PROTOTYPES.get(emotion, {}).items():
            mixed[au] = mixed.get(au, 0.0) + p * strength
    return {au: AUFact(v, "prior") for au, v in sorted(mixed.items()) if v >= PRIOR_AU_THRESHOLD}


def facts_from_distribution(
    distribution: Mapping[str, float],
    *,
    votes: Optional[Mapping[str, int]] = None,
    emotion_source: str = "annotation",
    aus: Optional[Mapping[int, AUFact]] = None,
    agreement: Optional[float] = None,
) -> Facts:
    """Build facts from an emotion distribution (label -> probability; labels may be synonyms).

    ``aus`` (AU -> AUFact) from annotations or a detector win over the emotion prior, AU by AU.
    ``agreement`` overrides the dominant share when the annotations know better (FER+ counts "unknown" votes).
    """
    dist: Dict[str, float] = {}
    for label, p in distribution.items():
        canon = taxonomy.canonical(label)
        dist[canon] = dist.get(canon, 0.0) + float(p)
    total = sum(dist.values())
    if total <= 0:
        raise ValueError("emotion distribution has no mass")
    dist = {k: v / total for k, v in sorted(dist.items(), key=lambda kv: -kv[1])}
    dominant = next(iter(dist))
    agreement = dist[dominant] if agreement is None else float(agreement)
    secondary = [k for k, v in dist.items() if k != dominant and v >= SECONDARY_THRESHOLD]

    au_facts = prior_aus(dist)
    if aus:
        au_facts.update({int(k): v for k, v in aus.items()})
    regions = {r: [au for au, _ in aus_for_region({k: v.intensity for k, v in au_facts.items()}, r)] for r in REGIONS}
    regions = {r: v for r, v in regions.items() if v}
    au_sources = sorted({f.source for f in au_facts.values()})
    return Facts(
        distribution=dist,
        dominant=dominant,
        secondary=secondary,
        agreement=agreement,
        intensity=_intensity_from_agreement(agreement),
        ambiguous=agreement < 0.5,
        aus=au_facts,
        regions=regions,
        sources={"emotion": emotion_source, "intensity": f"{emotion_source} (agreement)", "aus": "+".join(au_sources) or "none"},
        votes=dict(votes) if votes is not None else None,
    )


def au_name(au: int) -> str:
    return ACTION_UNITS[au][0]
