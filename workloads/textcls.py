"""Generated text for FedSpine: short token sentences and a topic to classify.

No files and no downloads: a seeded generator writes sentences of
``SEQ_LEN`` tokens over a small vocabulary. Each of ``NUM_CLASSES`` topics
owns ``TOPIC_WORDS`` words; the rest are filler words shared by every topic.
A sentence mixes words of its own topic with words of one distractor topic
and filler; its label is the topic with the MOST words in it (the distractor
gets fewer), so a model must count, not just spot a word. Node ``p`` writes
in its own style (its own filler distribution and a skew over topics), so the
nodes are non-IID. :func:`lm_corpus` gives unlabeled text from the same
generator for language-model pre-training.

Token 0 is padding and never appears; tokens are ``int64`` tensors of shape
``(n, SEQ_LEN)``, which :mod:`workloads.training`'s loops take as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NUM_CLASSES = 4
TOPIC_WORDS = 6
FILLER_WORDS = 16
SEQ_LEN = 12
VOCAB_SIZE = 1 + NUM_CLASSES * TOPIC_WORDS + FILLER_WORDS
# The held-out share of each node's sentences.
TEST_SHARE = 0.25
_TEST_SEED = 10_007


@dataclass(frozen=True, eq=False)
class TextSplit:
    """One node's sentences: train and test tokens and labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def topic_tokens(topic: int) -> torch.Tensor:
    """The token ids of ``topic``'s own words."""
    start = 1 + topic * TOPIC_WORDS
    return torch.arange(start, start + TOPIC_WORDS)


def filler_tokens() -> torch.Tensor:
    """The token ids of the filler words every topic shares."""
    start = 1 + NUM_CLASSES * TOPIC_WORDS
    return torch.arange(start, start + FILLER_WORDS)


def sentences(
    n: int, seed: int, style: int = 0, skew: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` labelled sentences written in ``style`` (seeded, deterministic).

    A sentence of topic ``c`` holds 3-5 words of ``c``, 1-2 fewer of a
    distractor topic, and filler drawn from ``style``'s distribution. With
    ``skew`` > 0 the topics are drawn with probability rising with
    ``(c - style) mod NUM_CLASSES`` (a node's label skew).
    """
    if n < 1:
        raise ValueError(f"sentences needs n >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    style_g = torch.Generator().manual_seed(1000 + style)
    filler_weights = torch.rand(FILLER_WORDS, generator=style_g) ** 2 + 0.05
    prior = torch.tensor(
        [1.0 + skew * ((c - style) % NUM_CLASSES) for c in range(NUM_CLASSES)]
    )
    labels = torch.multinomial(prior / prior.sum(), n, replacement=True, generator=g)
    fillers = filler_tokens()
    x = torch.empty(n, SEQ_LEN, dtype=torch.int64)
    for i in range(n):
        topic = int(labels[i])
        other = (topic + 1 + int(torch.randint(NUM_CLASSES - 1, (1,), generator=g))) % (
            NUM_CLASSES
        )
        own = 3 + int(torch.randint(3, (1,), generator=g))
        rival = own - 1 - int(torch.randint(2, (1,), generator=g))
        words = [
            topic_tokens(topic)[torch.randint(TOPIC_WORDS, (own,), generator=g)],
            topic_tokens(other)[torch.randint(TOPIC_WORDS, (rival,), generator=g)],
        ]
        pad = SEQ_LEN - own - rival
        picks = torch.multinomial(filler_weights, pad, replacement=True, generator=g)
        words.append(fillers[picks])
        sentence = torch.cat(words)
        x[i] = sentence[torch.randperm(SEQ_LEN, generator=g)]
    return x, labels


def node_data(
    partition_id: int, num_partitions: int, samples_per_node: int, seed: int
) -> TextSplit:
    """Node ``partition_id``'s sentences in its own style, with a held-out share."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(
            f"partition-id {partition_id} is outside 0..{num_partitions - 1}"
        )
    total = max(2, round(samples_per_node / (1 - TEST_SHARE)))
    x, y = sentences(total, seed * 7919 + partition_id, style=partition_id, skew=1.0)
    cut = samples_per_node if samples_per_node < total else total - 1
    return TextSplit(x[:cut], y[:cut], x[cut:], y[cut:])


def test_set(n: int = 800, styles: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed test set: ``n`` sentences over ``styles`` styles, no label skew."""
    parts = [sentences(n // styles, _TEST_SEED + s, style=s) for s in range(styles)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def lm_corpus(n: int, seed: int) -> torch.Tensor:
    """``n`` unlabeled sentences over 8 styles, for next-token pre-training."""
    parts = [sentences(max(1, n // 8), seed * 31 + s, style=s)[0] for s in range(8)]
    return torch.cat(parts)
