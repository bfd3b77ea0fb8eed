"""Understanding what the customer wrote: normalization, intent matching, menu answers.

Everything here is pure and cheap (no I/O, no model files): text is normalized once per turn, then
compared with rapidfuzz against the example phrases and keywords the flow author wrote in YAML.

Scoring, per intent (0..100, best of):
- a keyword found among the message's words (100), or within one typo of it (90; two typos for long
  keywords). Multi-word keywords must appear as a phrase.
- the best example phrase: `token_sort_ratio` (word order free, typos cost a little), and, when the
  example is no longer than the message, the share of the example's words the message contains
  (typos allowed), so "hi, where is my ordr AB-12345??" matches the example "where is my order"
  while a lone "my" does not match it at all.

Speed (a turn's decision must stay well under a millisecond): everything derived from the flow's
phrases (normalized examples and keywords, their word sets, which words a typo may stand for) is
computed once when an `IntentModel` is built, i.e. once per flow version, and shared by every
conversation. Per message, a `Message` is built once per turn and remembers which of an intent's
words it contains within the typo budget. Exact keyword hits are checked before any fuzzy scoring,
example phrases are scored by one rapidfuzz `extractOne` call with a `score_cutoff`, and callers that
only care whether an intent reaches a score pass `cutoff` so work below it is skipped.
"""
from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from math import ceil, floor
from typing import Iterable, Sequence

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

_NON_WORD = re.compile(r"[^\w]+|_")
_REPEATS = re.compile(r"([^\W\d])\1{2,}")   # a letter three or more times in a row


def normalize(text: str) -> str:
    """casefold, strip accents, drop punctuation, squeeze "pleeease" to "please", collapse spaces."""
    text = text.casefold()
    if not text.isascii():      # ASCII has nothing to decompose and no combining marks
        text = unicodedata.normalize("NFKD", text)
        if not text.isascii():
            text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _REPEATS.sub(r"\1", text)
    return " ".join(_NON_WORD.sub(" ", text).split())


# Flow-defined strings (option ids and titles) are normalized once; the set of them is finite.
_normalize_defined = lru_cache(maxsize=4096)(normalize)


def _typo_budget(word: str) -> int:
    if len(word) >= 9:
        return 2
    if len(word) >= 5:
        return 1
    return 0


class _Vocab:
    """Words a typo may stand for (those with a typo budget), indexed by first letter and by the
    lengths of the words they may be mistyped as (an edit distance is at least the difference in
    length): built once per flow version, used to find which of them a message contains."""

    __slots__ = ("candidates",)

    def __init__(self, words: Iterable[str]):
        candidates: dict[tuple[str, int], list[tuple[str, int]]] = {}
        for word in dict.fromkeys(words):
            budget = _typo_budget(word)
            for length in range(len(word) - budget, len(word) + budget + 1) if budget else ():
                candidates.setdefault((word[0], length), []).append((word, budget))
        self.candidates = {key: tuple(entries) for key, entries in candidates.items()}


class Message:
    """A normalized message prepared for matching; remembers which words it contains (with typos)."""

    __slots__ = ("text", "tokens", "present", "sorted_text", "_padded", "_weights", "_by_first", "_near")

    def __init__(self, normalized: str):
        self.text = normalized
        self.tokens = normalized.split()
        # the words sorted, as token_sort_ratio compares them; only for text that is its words joined by
        # single spaces (normalized text always is), where rapidfuzz splits words exactly as str.split
        self.sorted_text = " ".join(sorted(self.tokens)) if " ".join(self.tokens) == normalized else None
        self.present = frozenset(self.tokens)
        self._padded = f" {normalized} "
        self._weights: dict[str, float] = {}
        self._by_first: dict[str, list[str]] | None = None
        self._near: dict[_Vocab, frozenset[str]] = {}

    def word_weight(self, word: str) -> float:
        """1.0 if the message has the word, 0.9 if it has it within the typo budget, else 0."""
        if word in self.present:
            return 1.0
        weight = self._weights.get(word)
        if weight is None:
            budget = _typo_budget(word)
            if budget:
                by_first = self._by_first
                if by_first is None:        # typos are looked for among words with the same first letter
                    by_first = self._by_first = {}
                    for token in self.present:
                        by_first.setdefault(token[0], []).append(token)
                weight = 0.9 if any(
                    abs(len(t) - len(word)) <= budget and OSA.distance(t, word, score_cutoff=budget) <= budget
                    for t in by_first.get(word[0], ())) else 0.0
            else:
                weight = 0.0
            self._weights[word] = weight
        return weight

    def near(self, vocab: _Vocab) -> frozenset[str]:
        """The words of `vocab` the message contains within their typo budget (or exactly): the same
        test as word_weight, done for a whole vocabulary at once (and remembered for the turn)."""
        found = self._near.get(vocab)
        if found is None:
            hits: set[str] = set()
            candidates = vocab.candidates
            for token in self.present:
                for word, budget in candidates.get((token[0], len(token)), ()):
                    if OSA.distance(token, word, score_cutoff=budget) <= budget:
                        hits.add(word)
            found = self._near[vocab] = frozenset(hits)
        return found

    def has_phrase(self, phrase: str) -> bool:
        return f" {phrase} " in self._padded


def keyword_score(message: Message, keyword: str) -> float:
    """100 for the keyword itself, 90 for a near miss (typo), else 0. Multi-word: the exact phrase."""
    if " " in keyword:
        return 100.0 if message.has_phrase(keyword) else 0.0
    return 100.0 * message.word_weight(keyword)


def coverage_score(message: Message, example: str) -> float:
    """How much of the example the message contains, word by word (a typo costs 10%)."""
    words = example.split()
    return 100.0 * sum(message.word_weight(w) for w in words) / len(words)


def phrase_score(message: Message, example: str, example_tokens: int) -> float:
    """Similarity of a message to an example phrase: the whole phrase with typos and any word order
    (token_sort_ratio), or, when the message is at least as long, how fully it contains the example."""
    score = fuzz.token_sort_ratio(message.text, example)
    if example_tokens <= len(message.tokens) and score < 100.0:
        score = max(score, coverage_score(message, example))
    return score


class _IntentIndex:
    """What IntentModel.score needs, derived once from the normalized examples and keywords."""

    __slots__ = ("by_word", "coverage", "exact_keywords", "known", "lengths", "min_words", "phrase_keywords",
                 "phrases", "sorted_phrases", "typo_keywords", "vocab")

    def __init__(self, examples: tuple[tuple[str, int], ...], keywords: tuple[str, ...],
                 vocab: _Vocab | None = None):
        single = [k for k in keywords if " " not in k]
        self.exact_keywords = frozenset(single)
        self.phrase_keywords = tuple(f" {k} " for k in keywords if " " in k)
        self.typo_keywords = frozenset(k for k in single if _typo_budget(k))
        self.phrases = [ex for ex, _ in examples]
        # each phrase with its words sorted (token_sort_ratio = ratio of the sorted forms), shortest first
        self.sorted_phrases = sorted((" ".join(sorted(ex.split())) for ex in self.phrases), key=len)
        self.lengths = [len(ex) for ex in self.sorted_phrases]
        self.coverage = tuple((n, tuple(ex.split())) for ex, n in examples)
        by_word: dict[str, list[tuple[int, int]]] = {}   # word -> (example position, times in it)
        for i, (ex, _) in enumerate(examples):
            words = ex.split()
            for word in dict.fromkeys(words):
                by_word.setdefault(word, []).append((i, words.count(word)))
        self.by_word = {word: tuple(entries) for word, entries in by_word.items()}
        self.known = frozenset(by_word)
        self.min_words = min((n for _, n in examples), default=0)
        self.vocab = vocab or _Vocab(self.words())

    def words(self) -> list[str]:
        """The words a typo may stand for in this intent: its single-word keywords and example words."""
        return sorted(self.typo_keywords) + [w for _, words in self.coverage for w in words]

    def phrases_within(self, length: int, cutoff: float) -> list[str]:
        """The sorted forms of the phrases whose ratio with a sorted message of `length` characters can
        reach `cutoff`: the Indel distance is at least the difference in length, so
        ratio <= 100 * (1 - |l1 - l2| / (l1 + l2)). Order does not matter (only the best score is used)."""
        if cutoff <= 0.0 or not length:
            return self.sorted_phrases
        slack = 1.0 - cutoff / 100.0            # |l1 - l2| <= slack * (l1 + l2)
        low = floor(length * (1.0 - slack) / (1.0 + slack)) - 1
        high = ceil(length * (1.0 + slack) / (1.0 - slack)) + 1 if slack < 1.0 else self.lengths[-1]
        return self.sorted_phrases[bisect_left(self.lengths, low):bisect_right(self.lengths, high)]

    def covering(self, present: frozenset[str], near: frozenset[str], words_in_message: int,
                 floor_score: float) -> list[int]:
        """The examples (by position), no longer than the message, whose coverage can exceed
        `floor_score`: an upper bound is the share of their words the message has, exactly or with a typo."""
        by_word = self.by_word
        hits: dict[int, int] = {}
        for word in present.intersection(self.known) | near.intersection(self.known):
            for position, times in by_word[word]:
                hits[position] = hits.get(position, 0) + times
        coverage = self.coverage
        return sorted(position for position, count in hits.items()
                      if coverage[position][0] <= words_in_message
                      and 100.0 * count / coverage[position][0] >= floor_score)


@dataclass(frozen=True)
class IntentModel:
    """An intent ready for matching: normalized examples and keywords, its threshold."""

    name: str
    examples: tuple[tuple[str, int], ...]   # (normalized phrase, word count)
    keywords: tuple[str, ...]                # normalized
    threshold: float
    _index: _IntentIndex = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", _IntentIndex(self.examples, self.keywords))

    @classmethod
    def build(cls, name: str, examples: Iterable[str], keywords: Iterable[str], threshold: float) -> "IntentModel":
        exs = []
        for ex in examples:
            norm = normalize(ex)
            if norm:
                exs.append((norm, len(norm.split())))
        kws = tuple(k for k in (normalize(k) for k in keywords) if k)
        return cls(name, tuple(dict.fromkeys(exs)), tuple(dict.fromkeys(kws)), float(threshold))

    def share_vocabulary(self, vocab: _Vocab) -> None:
        """Use `vocab` (a superset of this intent's words, see share_vocabulary) for typo look-ups."""
        object.__setattr__(self, "_index", _IntentIndex(self.examples, self.keywords, vocab))

    def with_examples(self, examples: Iterable[str], keywords: Iterable[str] = ()) -> "IntentModel":
        more = IntentModel.build(self.name, examples, keywords, self.threshold)
        return IntentModel(self.name, tuple(dict.fromkeys(self.examples + more.examples)),
                           tuple(dict.fromkeys(self.keywords + more.keywords)), self.threshold)

    def score(self, message: Message | str, cutoff: float = 0.0) -> float:
        """The message's score for this intent. With `cutoff`, a score below it may come back as any
        value below it (the work that could only find a lower score is skipped); a score at or above
        it is exact."""
        if isinstance(message, str):
            message = Message(message)
        index = self._index
        present = message.present
        # keywords: exact words and phrases first (100 is the top score), then typos (90)
        if not index.exact_keywords.isdisjoint(present):
            return 100.0
        padded = message._padded
        for phrase in index.phrase_keywords:
            if phrase in padded:
                return 100.0
        best = 0.0
        near = None
        if index.typo_keywords:
            near = message.near(index.vocab)
            if not index.typo_keywords.isdisjoint(near):
                best = 90.0
        # example phrases, whole (token_sort_ratio): the ratio of the word-sorted forms, over those whose
        # length allows beating the best so far
        if index.phrases:
            floor_score = max(best, cutoff)
            if message.sorted_text is not None:
                found = process.extractOne(message.sorted_text,
                                           index.phrases_within(len(message.sorted_text), floor_score),
                                           scorer=fuzz.ratio, processor=None, score_cutoff=floor_score)
            else:
                found = process.extractOne(message.text, index.phrases, scorer=fuzz.token_sort_ratio,
                                           processor=None, score_cutoff=floor_score)
            if found is not None and found[1] > best:
                best = found[1]
        # example phrases, word by word: only those no longer than the message whose words it has
        # enough of to matter
        n = len(message.tokens)
        if best < 100.0 and index.min_words <= n:
            if near is None:
                near = message.near(index.vocab)
            coverage = index.coverage
            for position in index.covering(present, near, n, max(best, cutoff)):
                ex_n, words = coverage[position]
                covered = 100.0 * sum([1.0 if w in present else 0.9 if w in near else 0.0 for w in words]) / ex_n
                if covered > best:
                    best = covered
                    if best >= 100.0:
                        break
        return best


def share_vocabulary(models: Iterable[IntentModel]) -> None:
    """Give intents matched against the same messages (a flow's intents and FAQ entries) one typo
    vocabulary, so a turn's message looks its words' typos up once instead of once per intent. Whether
    a word is in a message within its typo budget does not depend on the vocabulary it is looked up in,
    so scores do not change. Done once per flow version, at load."""
    models = list(models)
    vocab = _Vocab(w for model in models for w in model._index.words())
    for model in models:
        model.share_vocabulary(vocab)


@dataclass(frozen=True)
class IntentMatch:
    intent: str
    score: float


def match_intent(message: Message | str, intents: Iterable[IntentModel]) -> IntentMatch | None:
    """The best-scoring intent at or above its own threshold (first declared wins a tie)."""
    if isinstance(message, str):
        message = Message(message)
    if not message.text:
        return None
    best: IntentMatch | None = None
    for intent in intents:
        threshold = intent.threshold
        # only a score reaching the threshold and beating the best so far matters
        score = intent.score(message, threshold if best is None or best.score < threshold else best.score)
        if score >= threshold and (best is None or score > best.score):
            best = IntentMatch(intent.name, score)
    return best


# --- menus -----------------------------------------------------------------------------------

# Cardinals and ordinals, 1..10, in English, German, Spanish, French, Italian and Portuguese
# (already normalized: no accents).
_NUMBER_WORDS = {
    1: "one first 1st eins erste erster erstes uno una primero primera primer un une premier premiere "
       "primo prima um primeiro primeira",
    2: "two second 2nd zwei zweite zweiter zweites dos segundo segunda deux deuxieme seconde due "
       "secondo seconda dois duas",
    3: "three third 3rd drei dritte dritter drittes tres tercero tercera tercer trois troisieme tre terzo "
       "terza terceiro terceira",
    4: "four fourth 4th vier vierte vierter cuatro cuarto cuarta quatre quatrieme quattro quarto quarta",
    5: "five fifth 5th funf funfte funfter cinco quinto quinta cinq cinquieme cinque",
    6: "six sixth 6th sechs sechste seis sexto sexta sixieme sei sesto",
    7: "seven seventh 7th sieben siebte siete septimo sept septieme sette settimo sete setimo",
    8: "eight eighth 8th acht achte ocho octavo huit huitieme otto ottavo oito oitavo",
    9: "nine ninth 9th neun neunte nueve noveno neuf neuvieme nove nono",
    10: "ten tenth 10th zehn zehnte diez decimo dix dixieme dieci decimo dez",
}
NUMBER_WORDS: dict[str, int] = {w: n for n, words in _NUMBER_WORDS.items() for w in words.split()}
_FILLER = frozenset(
    "the a an option number no nr num choice choose pick i want take please pls plz "
    "die der das nummer bitte el la opcion numero quiero por favor le l option numero s il vous plait "
    "il lo opzione o opcao quero".split()
)


def menu_index(normalized: str) -> int | None:
    """1-based position named by an answer like "2", "2.", "option 2", "two", "the second one", "zweite"."""
    tokens = [t for t in normalized.split() if t not in _FILLER]
    if len(tokens) == 2 and tokens[1] in ("one", "1"):
        tokens = tokens[:1]
    if len(tokens) != 1:
        return None
    token = tokens[0]
    if token.isdigit():
        return int(token)
    return NUMBER_WORDS.get(token)


def match_option(text: str, normalized: str, options: Sequence, threshold: float = 85.0,
                 message: Message | None = None):
    """The option (anything with .id and .title) a free-text menu answer selects, or None.

    Tried in order: the number (digits or words, 1-based), the option id, then a fuzzy match of the
    option title (ties or weak matches select nothing). `message`: the turn's prepared message, if any.
    """
    if not options or not normalized:
        return None
    index = menu_index(normalized)
    if index is not None:
        return options[index - 1] if 1 <= index <= len(options) else None
    stripped = text.strip()
    for option in options:
        if stripped == option.id or normalized == _normalize_defined(option.id):
            return option
    if message is None or message.text != normalized:
        message = Message(normalized)
    # the title with the top score, if it reaches the threshold and no other title ties with it
    # (a score below the threshold can neither select nor tie, so it need not be exact)
    n = len(message.tokens)
    present = message.present
    top, chosen, tied = -1.0, None, False
    for option in options:
        title = _defined_phrase(option.title)
        if message.sorted_text is not None:
            score = fuzz.ratio(message.sorted_text, title.sorted_text, score_cutoff=threshold)
        else:
            score = fuzz.token_sort_ratio(message.text, title.text, score_cutoff=threshold)
        if score < 100.0 and title.n <= n:      # as phrase_score: also how fully the message has the title
            near = message.near(title.vocab)
            if not (title.word_set.isdisjoint(present) and title.word_set.isdisjoint(near)):
                covered = 100.0 * sum([1.0 if w in present else 0.9 if w in near else 0.0
                                       for w in title.words]) / title.n
                score = max(score, covered)
        if score > top:
            top, chosen, tied = score, option, False
        elif score == top:
            tied = True
    if top >= threshold and not tied:
        return chosen
    return None


class _Phrase:
    """A flow-defined phrase (an option title) ready for phrase_score-style matching."""

    __slots__ = ("n", "sorted_text", "text", "vocab", "word_set", "words")

    def __init__(self, defined: str):
        self.text = normalize(defined)
        self.words = tuple(self.text.split())
        self.sorted_text = " ".join(sorted(self.words))
        self.word_set = frozenset(self.words)
        self.n = len(self.words)
        self.vocab = _Vocab(self.words)


_defined_phrase = lru_cache(maxsize=4096)(_Phrase)   # flow-defined titles: a finite set


# --- control words ---------------------------------------------------------------------------

CANCEL_WORDS = (
    "cancel", "never mind", "nevermind", "forget it", "abort", "quit", "abbrechen", "vergiss es",
    "cancelar", "olvidalo", "annuler", "laisse tomber", "annulla", "lascia stare", "esquece",
)
BACK_WORDS = (
    "back", "go back", "previous", "previous step", "zuruck", "volver", "atras", "retour", "precedent",
    "indietro", "voltar",
)


def is_control(normalized: str, words: Iterable[str]) -> bool:
    """Whether the whole message is one of the control words (a typo allowed): "cancel", "go back"."""
    if not normalized or len(normalized) > 30:
        return False
    exact, by_length = _control_words(words) if isinstance(words, tuple) else _control_spec(words)
    if normalized in exact:
        return True
    return any(OSA.distance(normalized, w, score_cutoff=budget) <= budget
               for w, budget in by_length.get(len(normalized), ()))


def _control_spec(words: Iterable[str]) -> tuple[frozenset[str], dict[int, tuple[tuple[str, int], ...]]]:
    """The words, and per message length the words a typo may stand for: the edit distance is at
    least the difference in length, so only words within their typo budget of that length count."""
    words = tuple(words)
    by_length: dict[int, list[tuple[str, int]]] = {}
    for w in words:
        budget = _typo_budget(w)
        for length in range(max(1, len(w) - budget), len(w) + budget + 1) if budget else ():
            by_length.setdefault(length, []).append((w, budget))
    return frozenset(words), {length: tuple(entries) for length, entries in by_length.items()}


_control_words = lru_cache(maxsize=64)(_control_spec)


# --- the built-in handoff intent ------------------------------------------------------------

HANDOFF_INTENT = "human"
HANDOFF_KEYWORDS = (
    "agent", "agents", "human", "humans", "operator", "representative", "real person", "live person",
    "live chat", "customer service", "somebody real", "someone real",
    "humano", "persona", "agente", "operador", "representante", "asesor",
    "mensch", "mitarbeiter", "mitarbeiterin", "kundenservice", "berater",
    "humain", "conseiller", "conseillere", "operateur",
    "atendente", "umano", "operatore", "pessoa",
)
HANDOFF_EXAMPLES = (
    "talk to a human", "talk to someone", "speak to someone", "speak to a person", "talk to a person",
    "i want a real person", "can i talk to somebody", "connect me to support", "let me talk to a real person",
    "hablar con una persona", "quiero hablar con alguien", "mit einem menschen sprechen",
    "ich mochte mit jemandem sprechen", "parler a quelqu un", "je veux parler a un conseiller",
    "falar com uma pessoa", "parlare con qualcuno",
)
