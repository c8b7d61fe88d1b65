"""The words that the word tables count in a recipe or a dish title: lower-case words of three
letters or more, English function words left out. One definition for the factor cards, the
model report, the traversals' word shares and the atlas's title words."""

from __future__ import annotations

import re

# English function words. sklearn's list is not used: importing sklearn.feature_extraction
# took 1.2 s of a first visit to the cards, and its list holds words that describe food here
# (thick, thin, fire, full, empty, top, bottom).
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    either else etc for from further had has have having he her here hers him his how however
    if in into is it its itself just me more most my no nor not now of off on once only or
    other our ours out over own per same she should so some such than that the their theirs
    them then there these they this those through to too under until up upon us very via was
    we were what when where whether which while who whom whose why will with within without
    would yet you your""".split()
)
_WORD = re.compile(r"[a-z]{3,}")


def text_words(text: str, drop: frozenset[str] = STOP_WORDS) -> set[str]:
    """The distinct words of ``text`` (three letters or more, lower case), ``drop`` left out."""
    return {word for word in _WORD.findall(str(text).lower()) if word not in drop}
