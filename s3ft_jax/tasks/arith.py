"""Arithmetic word problems, generated: GSM8K's format at a difficulty a small model can reach.

The embedded SmolLM2-135M solves none of GSM8K's training questions, so on GSM8K S3FT has no
own answers to keep and trains on what SDFT trains on. These problems have one to a few steps
(`task.arith.min_ops`/`max_ops`, operators from `task.arith.operators`, operands up to
`task.arith.max_operand`), so a small model gets some right, and its (wordy) answers differ
from the terse gold solutions written in GSM8K's style:

    Question: Mia has 7 pencils and buys 5 more. Then she gives away 3 of them.
              How many pencils does Mia have now?
    Gold:     7 + 5 = 12.
              12 - 3 = 9.
              The answer is 9.

Both splits come from one seeded stream (`task.arith.seed`), so the same settings give the same
problems on every machine and no data files are needed. A problem goes to the test split when
a hash of its arithmetic (the operands and operators, not the wording) says so: the splits
never share a calculation, and a problem's split does not depend on how many are asked for.
"""

from __future__ import annotations

import hashlib
import random

from s3ft_jax.errors import ConfigError
from s3ft_jax.tasks.base import Example, Task, TaskPrompts, check_split
from s3ft_jax.tasks.gsm8k import PREDICTION_PROMPT
from s3ft_jax.tasks.settings import ArithTaskSettings

SPLITS = ("train", "test")
# The difficulty the embedded SmolLM2-135M half-masters (33 of the first 100 training problems):
# one step, + or -, operands up to 10. configs/demo.py and configs/study_cpu.py use it.
SMALL_MODEL_REACH = {"min_ops": 1, "max_ops": 1, "max_operand": 10, "operators": "+-"}
TEST_SHARE = 4  # one calculation in four goes to the test split
MAX_MISSES = 5000  # draws in a row that make no new problem before the space counts as used up

NAMES = (("Mia", "she", "her"), ("Liam", "he", "his"), ("Ava", "she", "her"), ("Noah", "he", "his"),
         ("Emma", "she", "her"), ("Omar", "he", "his"), ("Sofia", "she", "her"), ("Ravi", "he", "his"),
         ("Lena", "she", "her"), ("Tom", "he", "his"), ("Zoe", "she", "her"), ("Ben", "he", "his"))
ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "shells", "cards", "coins", "stamps")

# The first step introduces the quantity, later steps change it; {a} {b} are its operands, {x}
# the running total. Subtraction never goes below zero (the generator picks b <= x).
FIRST = {
    "+": ("{name} has {a} {item} and buys {b} more.", "{name} picks {a} {item} in the morning and {b} in the afternoon."),
    "-": ("{name} has {a} {item} and gives {b} of them away.", "{name} has {a} {item} and loses {b} of them."),
    "*": ("{name} buys {a} bags with {b} {item} in each bag.", "{name} fills {a} boxes with {b} {item} each."),
}
LATER = {
    "+": ("Then {pron} gets {b} more {item}.", "Then a friend gives {obj} {b} more {item}."),
    "-": ("Then {pron} gives away {b} of them.", "Then {pron} uses {b} of them."),
    "*": ("Then {pron} ends up with {b} times as many {item}.", "Then {poss} {item} grow to {b} times as many."),
}
QUESTION = ("How many {item} does {name} have now?", "How many {item} does {name} have in the end?")


def _steps(rng: random.Random, settings: ArithTaskSettings) -> list[tuple[str, int, int, int]]:
    """(operator, left, right, result) per step; the left of each later step is the running total."""
    n = rng.randint(settings.min_ops, settings.max_ops)
    hi = settings.max_operand
    small = max(2, min(hi, 10))  # multipliers stay small, as in "3 bags of 5"
    steps, total = [], None
    for _ in range(n):
        op = rng.choice(settings.operators)
        if op == "*":
            left = total if total is not None else rng.randint(2, small)
            right = rng.randint(2, small)
            result = left * right
        elif op == "+":
            left = total if total is not None else rng.randint(1, hi)
            right = rng.randint(1, hi)
            result = left + right
        else:
            left = total if total is not None else rng.randint(2, hi)
            if left < 2:  # nothing left to take away: add instead
                op, right = "+", rng.randint(1, hi)
                result = left + right
            else:
                right = rng.randint(1, min(hi, left - 1))
                result = left - right
        steps.append((op, left, right, result))
        total = result
    return steps


def _problem(rng: random.Random, settings: ArithTaskSettings) -> tuple[str, str, int, str]:
    """(question, gold solution, answer, signature): the signature is the arithmetic alone."""
    steps = _steps(rng, settings)
    name, pron, poss = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    obj = "her" if pron == "she" else "him"
    sentences = []
    for i, (op, left, right, _) in enumerate(steps):
        template = rng.choice(FIRST[op] if i == 0 else LATER[op])
        sentences.append(template.format(name=name, pron=pron, poss=poss, obj=obj, item=item, a=left, b=right))
    sentences.append(rng.choice(QUESTION).format(name=name, item=item))
    question = " ".join(s[0].upper() + s[1:] for s in sentences)
    answer = steps[-1][3]
    gold = "\n".join(f"{left} {op} {right} = {result}." for op, left, right, result in steps)
    gold += f"\nThe answer is {answer}."
    signature = " ".join(f"{op}{left},{right}" for op, left, right, _ in steps)
    return question, gold, answer, signature


def in_test_split(seed: int, signature: str) -> bool:
    digest = hashlib.sha256(f"{seed}:{signature}".encode()).digest()
    return digest[0] % TEST_SHARE == 0


def generate(settings: ArithTaskSettings) -> dict[str, list[Example]]:
    """Both splits, `train_size` and `test_size` problems, each question once."""
    rng = random.Random(settings.seed)
    wanted = {"train": settings.train_size, "test": settings.test_size}
    out: dict[str, list[Example]] = {"train": [], "test": []}
    seen: set[str] = set()
    # A space too small for the sizes shows as a long run of draws that add nothing: stop then
    # (in well under a second) rather than search on.
    misses = 0
    while any(len(out[s]) < wanted[s] for s in SPLITS):
        if misses == MAX_MISSES:
            raise ConfigError(
                f"task.arith: could not make {settings.train_size} train and {settings.test_size} test problems "
                f"from max_operand={settings.max_operand}, ops {settings.min_ops}-{settings.max_ops}, "
                f"operators {settings.operators!r} (got {len(out['train'])} and {len(out['test'])}): "
                "raise task.arith.max_operand or lower the sizes"
            )
        question, gold, answer, signature = _problem(rng, settings)
        split = "test" if in_test_split(settings.seed, signature) else "train"
        if question in seen or len(out[split]) >= wanted[split]:
            misses += 1
            continue
        misses = 0
        seen.add(question)
        out[split].append(Example(f"arith-{split}-{len(out[split])}", {"question": question}, gold, str(answer)))
    return out


def examples(settings: ArithTaskSettings, split: str) -> list[Example]:
    check_split("arith", split, SPLITS)
    return generate(settings)[split]


def task(settings: ArithTaskSettings) -> Task:
    return Task(
        name="arith",
        judge="numeric",
        prompts=TaskPrompts(PREDICTION_PROMPT).resolved(),
        load=lambda data_dir, split: examples(settings, split),
        splits=SPLITS,
        max_new_tokens=192,
    )
