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
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

_NON_WORD = re.compile(r"[^\w]+|_")
_REPEATS = re.compile(r"([^\W\d])\1{2,}")   # a letter three or more times in a row


def normalize(text: str) -> str:
    """casefold, strip accents, drop punctuation, squeeze "pleeease" to "please", collapse spaces."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _REPEATS.sub(r"\1", text)
    return " ".join(_NON_WORD.sub(" ", text).split())


def _typo_budget(word: str) -> int:
    if len(word) >= 9:
        return 2
    if len(word) >= 5:
        return 1
    return 0


class Message:
    """A normalized message prepared for matching; remembers which words it contains (with typos)."""

    __slots__ = ("text", "tokens", "present", "_padded", "_weights", "_by_first")

    def __init__(self, normalized: str):
        self.text = normalized
        self.tokens = normalized.split()
        self.present = frozenset(self.tokens)
        self._padded = f" {normalized} "
        self._weights: dict[str, float] = {}
        self._by_first: dict[str, list[str]] = {}
        for token in self.present:          # typos are looked for among words with the same first letter
            self._by_first.setdefault(token[0], []).append(token)

    def word_weight(self, word: str) -> float:
        """1.0 if the message has the word, 0.9 if it has it within the typo budget, else 0."""
        if word in self.present:
            return 1.0
        weight = self._weights.get(word)
        if weight is None:
            budget = _typo_budget(word)
            weight = 0.9 if budget and any(
                abs(len(t) - len(word)) <= budget and OSA.distance(t, word, score_cutoff=budget) <= budget
                for t in self._by_first.get(word[0], ())) else 0.0
            self._weights[word] = weight
        return weight

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


@dataclass(frozen=True)
class IntentModel:
    """An intent ready for matching: normalized examples and keywords, its threshold."""

    name: str
    examples: tuple[tuple[str, int], ...]   # (normalized phrase, word count)
    keywords: tuple[str, ...]                # normalized
    threshold: float

    @classmethod
    def build(cls, name: str, examples: Iterable[str], keywords: Iterable[str], threshold: float) -> "IntentModel":
        exs = []
        for ex in examples:
            norm = normalize(ex)
            if norm:
                exs.append((norm, len(norm.split())))
        kws = tuple(k for k in (normalize(k) for k in keywords) if k)
        return cls(name, tuple(dict.fromkeys(exs)), tuple(dict.fromkeys(kws)), float(threshold))

    def with_examples(self, examples: Iterable[str], keywords: Iterable[str] = ()) -> "IntentModel":
        more = IntentModel.build(self.name, examples, keywords, self.threshold)
        return IntentModel(self.name, tuple(dict.fromkeys(self.examples + more.examples)),
                           tuple(dict.fromkeys(self.keywords + more.keywords)), self.threshold)

    def score(self, message: Message | str) -> float:
        if isinstance(message, str):
            message = Message(message)
        best = 0.0
        for kw in self.keywords:
            best = max(best, keyword_score(message, kw))
            if best >= 100.0:
                return best
        if self.examples:
            found = process.extractOne(message.text, [ex for ex, _ in self.examples], scorer=fuzz.token_sort_ratio)
            best = max(best, found[1] if found else 0.0)
        n = len(message.tokens)
        for ex, ex_n in self.examples:
            if best >= 100.0:
                break
            if ex_n <= n:
                best = max(best, coverage_score(message, ex))
        return best


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
        score = intent.score(message)
        if score >= intent.threshold and (best is None or score > best.score):
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


def match_option(text: str, normalized: str, options: Sequence, threshold: float = 85.0):
    """The option (anything with .id and .title) a free-text menu answer selects, or None.

    Tried in order: the number (digits or words, 1-based), the option id, then a fuzzy match of the
    option title (ties or weak matches select nothing).
    """
    if not options or not normalized:
        return None
    index = menu_index(normalized)
    if index is not None:
        return options[index - 1] if 1 <= index <= len(options) else None
    stripped = text.strip()
    for option in options:
        if stripped == option.id or normalized == normalize(option.id):
            return option
    message = Message(normalized)
    scored = []
    for option in options:
        title = normalize(option.title)
        scored.append((phrase_score(message, title, len(title.split())), option))
    scored.sort(key=lambda pair: pair[0], reverse=True)
    if scored[0][0] >= threshold and (len(scored) == 1 or scored[0][0] > scored[1][0]):
        return scored[0][1]
    return None


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
    return any(normalized == w or OSA.distance(normalized, w, score_cutoff=_typo_budget(w)) <= _typo_budget(w)
               for w in words)


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
