"""Objective expressions, as written on the command line, parsed into `render.algebra` objectives.

    block4_conv3:12                 spatial mean of channel 12 of block4_conv3
    block5_conv1:7@center           channel 7 at the centre of the map (also @centre)
    block5_conv1:7@3,5              channel 7 at column x = 3, row y = 5 of the map (x first)
    block4_conv3                    mean square of the whole layer (deep dream)
    class:sea snake, class:65       the head's logit of a class, by name or index
    0.5*block5_conv1:7@center - block4_conv3:30
    -block4_conv3:12                a leading '-' minimizes

Grammar (spaces between tokens are ignored):

    sum      := product (('+' | '-') product)*
    product  := unary (('*' | '/') unary)*            at most one side an objective, '/' by numbers
    unary    := ('-' | '+') unary | primary
    primary  := NUMBER | '(' sum ')' | 'class:' CLASS | LAYER [':' INT ['@' POSITION]]
    POSITION := 'center' | 'centre' | INT ',' INT     x, then y

Layer names are letters, digits, '_' and '.'; the resolver maps them (and aliases such as
conv4_3) to the network's names. A class name runs to the next operator or parenthesis and may
contain spaces, apostrophes and hyphens inside words, so a '-' after a class name needs a space
before it. A malformed expression raises `ExpressionError`, one line that quotes the expression
and gives the 1-based column of the offending character:

    objective "block4_conv3:x" at column 14: expected a channel number after ':', found 'x'
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NoReturn

from render.algebra import Objective, channel, class_logit, layer_l2, neuron
from render.classes import parse_classes
from render.errors import UserError
from render.models.network import find_layer

_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"\d+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_WORD = re.compile(r"[A-Za-z]+")


class ExpressionError(ValueError):
    """A malformed objective expression; the message is one line."""

    def __init__(self, expression: str, column: int, problem: str):
        super().__init__(f'objective "{expression}" at column {column}: {problem}')
        self.expression, self.column, self.problem = expression, column, problem


class _Parser:
    def __init__(self, text, resolve, class_index, head, width):
        self.text, self.pos = text, 0
        self.resolve, self.class_index, self.head, self.width = resolve, class_index, head, width

    def fail(self, problem: str, at: int | None = None) -> NoReturn:
        raise ExpressionError(self.text, (self.pos if at is None else at) + 1, problem)

    def peek(self) -> str:
        """The next character after spaces ('' at the end); the cursor moves past the spaces."""
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def found(self) -> str:
        char = self.peek()
        return f"'{char}'" if char else "the end"

    def match(self, pattern: re.Pattern) -> str | None:
        self.peek()
        found = pattern.match(self.text, self.pos)
        if found is None:
            return None
        self.pos = found.end()
        return found.group()

    def external(self, lookup: Callable, key, at: int, what: str):
        """A resolver's answer; its error becomes an ExpressionError at `at`."""
        try:
            return lookup(key)
        except ValueError as error:
            lines = str(error).strip().splitlines()
            self.fail(lines[0] if lines else f"unknown {what} '{key}'", at)
        except LookupError:
            self.fail(f"unknown {what} '{key}'", at)

    def parse(self) -> Objective:
        value = self.sum()
        if self.peek():
            self.fail(f"expected an operator (+ - * /) or the end, found {self.found()}")
        if not isinstance(value, Objective):
            self.fail("a number alone is not an objective: weight a term, e.g. 2*LAYER:K", 0)
        return value

    def sum(self):
        self.peek()
        start = self.pos
        parts = [(self.product(), start)]
        while self.peek() in ("+", "-"):
            sign = self.text[self.pos]
            self.pos += 1
            self.peek()
            start = self.pos
            value = self.product(after=sign)
            parts.append((-value if sign == "-" else value, start))
        if len(parts) == 1:
            return parts[0][0]
        for value, start in parts:
            if not isinstance(value, Objective):
                self.fail("a number cannot be added to an objective: weight a term with '*'", start)
        return sum(value for value, _ in parts)

    def product(self, after: str | None = None):
        value = self.unary(after)
        while self.peek() in ("*", "/"):
            operator = self.text[self.pos]
            self.pos += 1
            self.peek()
            start = self.pos
            other = self.unary(after=operator)
            if operator == "/":
                if isinstance(other, Objective):
                    self.fail("can only divide by a number", start)
                if other == 0:
                    self.fail("division by zero", start)
                value = value / other
            elif isinstance(value, Objective) and isinstance(other, Objective):
                self.fail("cannot multiply two objectives: a weight is a number", start)
            else:
                value = value * other
        return value

    def unary(self, after: str | None = None):
        sign = self.peek()
        if sign in ("-", "+"):
            self.pos += 1
            value = self.unary(after=sign)
            return -value if sign == "-" else value
        return self.primary(after)

    def primary(self, after: str | None):
        char, start = self.peek(), self.pos
        if char == "(":
            self.pos += 1
            value = self.sum()
            if self.peek() != ")":
                opened = f"the '(' at column {start + 1}"
                self.fail(f"expected ')' to close {opened}, found {self.found()}")
            self.pos += 1
            return value
        number = self.match(_NUMBER)
        if number is not None:
            return float(number)
        name = self.match(_NAME)
        if name is None:
            place = f" after '{after}'" if after else ""
            self.fail(f"expected a term{place}, found {self.found()}")
        if name == "class" and self.text.startswith(":", self.pos):
            self.pos += 1
            return self.class_term(start)
        layer = self.external(self.resolve, name, start, "layer")
        if self.peek() != ":":
            return layer_l2(layer)
        self.pos += 1
        k = self.match(_INTEGER)
        if k is None:
            self.fail(f"expected a channel number after ':', found {self.found()}")
        k_at, k = self.pos - len(k), int(k)
        count = self.width(layer) if self.width else None
        if count is not None and k >= count:
            self.fail(f"channel {k} is out of range: {layer} has channels 0-{count - 1}", k_at)
        if self.peek() != "@":
            return channel(layer, k)
        self.pos += 1
        return neuron(layer, k, self.position())

    def position(self) -> tuple[int, int] | None:
        """After '@': None for the centre, else (y, x) from 'x,y'."""
        word = self.match(_WORD)
        if word is not None and word.lower() in ("center", "centre"):
            return None
        if word is not None:
            self.fail(f"expected 'center' or x,y after '@', found '{word}'", self.pos - len(word))
        x = self.match(_INTEGER)
        if x is None:
            self.fail(f"expected 'center' or x,y after '@', found {self.found()}")
        if self.peek() != ",":
            self.fail(f"expected ',' and y after x in '@x,y', found {self.found()}")
        self.pos += 1
        y = self.match(_INTEGER)
        if y is None:
            self.fail(f"expected y after ',' in '@x,y', found {self.found()}")
        return int(y), int(x)

    def class_term(self, start: int) -> Objective:
        if self.head is None:
            self.fail("this network has no class head", start)
        self.peek()
        begin = end = self.pos
        text = self.text
        while end < len(text):
            char = text[end]
            inside_word = (
                char == "-"
                and end > begin
                and (text[end - 1].isalnum() or text[end - 1] == "'")
                and text[end + 1 : end + 2].isalnum()
            )
            if not (char.isalnum() or char in " '_" or inside_word):
                break
            end += 1
        name = text[begin:end].rstrip()
        if not name:
            self.fail(f"expected a class name or number after 'class:', found {self.found()}")
        self.pos = begin + len(name)
        key = int(name) if name.isdigit() else name
        index = self.external(self.class_index, key, begin, "class")
        return class_logit(self.head, index)


def parse(
    expression: str,
    resolve: Callable[[str], str],
    class_index: Callable[[int | str], int],
    head: str | None,
    width: Callable[[str], int] | None = None,
) -> Objective:
    """The objective an expression describes.

    resolve(name) gives the canonical layer name and raises ValueError for an unknown one;
    class_index(name or index) gives a class index and raises ValueError for an unknown class;
    head is the layer of class logits (None: no `class:` terms); width(layer), when given, is the
    layer's channel count, to check channel numbers. Raises ExpressionError.
    """
    return _Parser(expression, resolve, class_index, head, width).parse()


def parse_for(network, expression: str) -> Objective:
    """`parse` with a Network's layer names and aliases, channel counts and class names."""
    head = network.head
    count = find_layer(network.layers, head).channels if head else 0

    def class_index(key: int | str) -> int:
        try:
            indices = parse_classes(key, getattr(network, "labels", ()), count)
        except UserError as error:
            raise ValueError(str(error)) from None
        if len(indices) != 1:
            raise ValueError(f"class '{key}' names {len(indices)} classes: give one")
        return indices[0]

    return parse(
        expression,
        lambda name: find_layer(network.layers, name).name,
        class_index,
        head,
        lambda name: find_layer(network.layers, name).channels,
    )
