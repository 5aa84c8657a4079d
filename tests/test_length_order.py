"""finetuner's length-grouped training order: every row once per epoch, batches of similar length, seeded."""

from __future__ import annotations

import random

from finetuner.training.finetune import LengthGroupedBatchOrder


def _lengths(n: int = 1000, seed: int = 0):
    rng = random.Random(seed)
    return [rng.randint(3, 120) for _ in range(n)]


def test_every_row_once_and_the_same_order_for_the_same_seed_and_epoch():
    lengths = _lengths()
    order = list(LengthGroupedBatchOrder(lengths, 32, seed=1))
    assert sorted(order) == list(range(len(lengths)))
    assert list(LengthGroupedBatchOrder(lengths, 32, seed=1)) == order
    assert list(LengthGroupedBatchOrder(lengths, 32, seed=2)) != order
    other_epoch = LengthGroupedBatchOrder(lengths, 32, seed=1)
    other_epoch.set_epoch(1)
    assert list(other_epoch) != order


def test_batches_need_far_less_padding_than_random_batches():
    lengths, batch = _lengths(), 32

    def padding(order):
        batches = [order[i:i + batch] for i in range(0, len(order), batch)]
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    grouped = padding(list(LengthGroupedBatchOrder(lengths, batch, seed=0)))
    shuffled = list(range(len(lengths)))
    random.Random(0).shuffle(shuffled)
    assert grouped < padding(shuffled) / 4


def test_batches_are_not_visited_long_to_short():
    lengths, batch = _lengths(), 32
    order = list(LengthGroupedBatchOrder(lengths, batch, seed=0))
    maxima = [max(lengths[i] for i in order[s:s + batch]) for s in range(0, len(order), batch)]
    assert maxima != sorted(maxima, reverse=True) and maxima != sorted(maxima)


def test_small_data_still_mixes_lengths_across_batches():
    lengths = list(range(1, 33))  # 32 rows, batch 8: at least four groups, never one sorted run
    order = list(LengthGroupedBatchOrder(lengths, 8, seed=0))
    assert sorted(order) == list(range(32))
    assert order != sorted(order, key=lengths.__getitem__)
