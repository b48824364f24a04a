"""Facts: one structured, JSON-ready record per image, built from the evidence a dataset brings.

Second step of the caption flow (evidence -> **facts** -> writer -> shards). Every fact records where it came
from: ``annotation`` (labels, votes or AU codes shipped with the dataset), ``estimate`` (a detector's reading) or
``prior`` (derived from the annotated emotion through FACS prototypes). Precedence, AU by AU: annotation, then
estimate, then prior. Priors stand in for all AUs only when a face brings no AU evidence at all; next to estimates
they only fill gaps that the FACS upper/lower-face co-occurrence pairs point to (a measured AU12 with the emotion's
AU6 missing), and the same pairs check the evidence (``checks``). Region states (brows, eyes, nose, cheeks,
mouth, jaw) put the AUs and the face states (eyes closed, mouth open, teeth) into plain words for the writers.

What the facts may claim: an emotion intensity only from graded evidence (votes or a soft distribution; ``None``
for a single hard label, :func:`is_graded`), and support for the label only from measured AUs in the label's FACS
prototype (``prototype_seen``; ``prototype_unseen`` lists measured prototype AUs that are at rest).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from emocap import taxonomy

from .facs_knowledge import ACTION_UNITS, CO_OCCURRENCE, EMOTION_PROTOTYPES, PROTOTYPE_AUS, REGIONS, aus_for_region

PRIOR_AU_THRESHOLD = 0.25
ACTIVE_AU_THRESHOLD = 0.2  # an estimated or annotated AU at or above this intensity is "active"
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
    intensity: Optional[str]  # high | moderate | low from graded evidence (votes, soft scores); None for a hard label
    ambiguous: bool
    aus: Dict[int, AUFact] = field(default_factory=dict)
    regions: Dict[str, List[int]] = field(default_factory=dict)
    sources: Dict[str, str] = field(default_factory=dict)
    votes: Optional[Dict[str, int]] = None
    region_states: Dict[str, str] = field(default_factory=dict)
    face: Dict[str, object] = field(default_factory=dict)  # head pose, eyes, mouth open, teeth (estimates)
    affect: Dict[str, float] = field(default_factory=dict)  # annotated valence / arousal
    checks: List[str] = field(default_factory=list)  # what the co-occurrence priors found
    prototype_seen: List[int] = field(default_factory=list)  # measured active AUs in the label's FACS prototype
    prototype_unseen: List[int] = field(default_factory=list)  # measured prototype AUs that are not active

    def to_dict(self) -> dict:
        d = asdict(self)
        d["aus"] = {str(k): v.to_dict() for k, v in self.aus.items()}
        d["distribution"] = {k: round(float(v), 4) for k, v in self.distribution.items()}
        d["agreement"] = round(float(self.agreement), 4)
        return d


def is_graded(distribution: Mapping[str, float], votes: Optional[Mapping[str, object]]) -> bool:
    """Whether the emotion evidence has degrees (annotator votes, or a distribution over more than one label).

    A single hard label (one class at probability 1, no votes) says which emotion, not how strongly: captions
    built from it carry no intensity.
    """
    return votes is not None or sum(1 for v in distribution.values() if float(v) > 0) > 1


def label_evidence(dominant: str, aus: Mapping[int, AUFact], measured: Sequence[int]) -> Tuple[List[int], List[int]]:
    """(measured active AUs in the label's FACS prototype, measured prototype AUs that are not active)."""
    prototype = PROTOTYPE_AUS.get(dominant, ())
    seen = sorted(au for au, f in aus.items() if au in prototype and f.source != "prior")
    unseen = sorted(au for au in prototype if au in measured and au not in aus)
    return seen, unseen


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


def combine_aus(
    distribution: Mapping[str, float],
    estimates: Optional[Mapping[int, float]] = None,
    annotations: Optional[Mapping[int, float]] = None,
) -> Tuple[Dict[int, AUFact], List[str]]:
    """Active AUs by precedence (annotation > estimate > prior) and the co-occurrence checks.

    Without any AU evidence the emotion prior gives all AUs. With evidence, an AU of the dominant emotion's
    prototype that is the co-occurrence partner of an active AU, but was not itself seen, is filled in as a prior
    at half its partner's intensity; a prototype AU with no evidence and no active partner is reported in
    ``checks`` (the face does not show what the label leads one to expect).
    """
    evidence: Dict[int, AUFact] = {}
    for au, v in (estimates or {}).items():
        if v >= ACTIVE_AU_THRESHOLD:
            evidence[int(au)] = AUFact(float(v), "estimate")
    annotated = {int(k): float(v) for k, v in (annotations or {}).items()}
    for au, v in annotated.items():
        evidence.pop(au, None)
        if v >= ACTIVE_AU_THRESHOLD:
            evidence[au] = AUFact(v, "annotation")
    if estimates is None and annotations is None:
        return prior_aus(distribution), []
    measured = set(annotated) | {int(k) for k in (estimates or {})}  # AUs someone looked at (active or not)
    dominant = max(distribution, key=distribution.get)
    prototype = EMOTION_PROTOTYPES.get(dominant, {})
    checks: List[str] = []
    filled: Dict[int, AUFact] = {}
    for a, b in CO_OCCURRENCE:
        for seen, partner in ((a, b), (b, a)):
            if seen in evidence and partner not in evidence and partner in prototype and partner not in measured:
                filled[partner] = AUFact(round(evidence[seen].intensity / 2.0, 3), "prior")
                checks.append(f"AU{partner} filled from its co-occurrence with AU{seen} ({dominant})")
    for au in sorted(prototype):
        if au not in evidence and au not in filled and prototype[au] >= 0.7:
            partners = [b if a == au else a for a, b in CO_OCCURRENCE if au in (a, b)]
            if any(p in evidence for p in partners):
                checks.append(f"AU{au} expected with its partner for {dominant} but not seen")
            else:
                checks.append(f"AU{au} expected for {dominant} but not seen")
    evidence.update(filled)
    return dict(sorted(evidence.items())), checks


def region_states(aus: Mapping[int, AUFact], face: Mapping[str, object]) -> Dict[str, str]:
    """A short plain-language state for each face region, from the active AUs and the face states."""
    on = {au for au in aus}
    states: Dict[str, str] = {}
    if 4 in on:
        states["brows"] = "lowered and drawn together" + (" with the inner ends raised" if 1 in on else "")
    elif 1 in on and 2 in on:
        states["brows"] = "raised"
    elif 1 in on:
        states["brows"] = "raised at the inner ends"
    elif 2 in on:
        states["brows"] = "raised at the outer ends"
    else:
        states["brows"] = "at rest"
    eyes = str(face.get("eyes", "")) if face else ""
    if eyes == "closed":
        states["eyes"] = "closed"
    elif 5 in on:
        states["eyes"] = "wide open"
    elif 7 in on or 6 in on:
        states["eyes"] = "narrowed"
    else:
        states["eyes"] = eyes or "open"
    states["nose"] = "wrinkled" if 9 in on else "at rest"
    states["cheeks"] = "raised" if 6 in on else "at rest"
    mouth = []
    if 12 in on:
        mouth.append("smiling")
    if 15 in on:
        mouth.append("corners turned down")
    if 20 in on:
        mouth.append("stretched")
    if 23 in on or 24 in on:
        mouth.append("tightened")
    if 10 in on:
        mouth.append("upper lip raised")
    opened = bool(face.get("mouth_open")) if face else (25 in on)
    mouth.append("open" if opened or 25 in on else "closed")
    if face and face.get("teeth_visible"):
        mouth.append("teeth showing")
    states["mouth"] = ", ".join(mouth)
    states["jaw"] = "dropped" if 26 in on else ("chin raised" if 17 in on else "at rest")
    return states


def facts_from_distribution(
    distribution: Mapping[str, float],
    *,
    votes: Optional[Mapping[str, int]] = None,
    emotion_source: str = "annotation",
    aus: Optional[Mapping[int, AUFact]] = None,
    agreement: Optional[float] = None,
    estimates: Optional[Mapping[int, float]] = None,
    annotated_aus: Optional[Mapping[int, float]] = None,
    face: Optional[Mapping[str, object]] = None,
    valence: Optional[float] = None,
    arousal: Optional[float] = None,
) -> Facts:
    """Build facts from an emotion distribution (label -> probability; labels may be synonyms) and AU evidence.

    ``estimates`` (AU -> 0..1 from the face analysis) and ``annotated_aus`` (from the dataset) go through
    :func:`combine_aus`; ``aus`` (AU -> AUFact) is a direct override, AU by AU. ``face`` carries the analysis
    states (head pose, eyes, mouth open, teeth). ``agreement`` overrides the dominant share when the annotations
    know better (FER+ counts "unknown" votes).
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

    au_facts, checks = combine_aus(dist, estimates, annotated_aus)
    if aus:
        au_facts.update({int(k): v for k, v in aus.items()})
    regions = {r: [au for au, _ in aus_for_region({k: v.intensity for k, v in au_facts.items()}, r)] for r in REGIONS}
    regions = {r: v for r, v in regions.items() if v}
    au_sources = sorted({f.source for f in au_facts.values()})
    measured = sorted({int(k) for k in (estimates or {})} | {int(k) for k in (annotated_aus or {})})
    seen, unseen = label_evidence(dominant, au_facts, measured)
    graded = is_graded(distribution, votes)
    affect = {k: round(float(v), 3) for k, v in (("valence", valence), ("arousal", arousal)) if v is not None}
    return Facts(
        distribution=dist,
        dominant=dominant,
        secondary=secondary,
        agreement=agreement,
        intensity=_intensity_from_agreement(agreement) if graded else None,
        ambiguous=agreement < 0.5,
        aus=au_facts,
        regions=regions,
        sources={"emotion": emotion_source,
                 "intensity": f"{emotion_source} (agreement)" if graded else "none (single hard label)",
                 "aus": "+".join(au_sources) or "none"},
        votes=dict(votes) if votes is not None else None,
        region_states=region_states(au_facts, face or {}) if (face or estimates is not None or annotated_aus) else {},
        face=dict(face or {}),
        affect=affect,
        checks=checks,
        prototype_seen=seen,
        prototype_unseen=unseen,
    )


def au_name(au: int) -> str:
    return ACTION_UNITS[au][0]
