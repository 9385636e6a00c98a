"""runner.text: the small text idioms every layer shares, with the exact text they give."""

import pytest

from runner import text


def test_one_line_joins_whitespace_runs_and_takes_exceptions():
    assert text.one_line(ValueError("bad\n  value\there ")) == "bad value here"
    assert text.one_line("") == ""


@pytest.mark.parametrize(("limit", "more", "expected"), [
    (None, "", "abc def ghi"),
    (11, "...", "abc def ghi"),     # exactly the limit: nothing cut, nothing added
    (10, "...", "abc def gh..."),
    (5, "", "abc d"),
])
def test_one_line_cuts_at_the_limit_and_says_so_only_when_asked(limit, more, expected):
    assert text.one_line("abc\ndef  ghi", limit, more) == expected


@pytest.mark.parametrize(("given", "limit", "expected"), [
    ("Small net. Trained\nfor a test.", 90, "Small net."),
    ("A net with no full stop", 10, "A net wit…"),
    ("v1.2 of the net", 90, "v1.2 of the net"),    # a dot inside a word ends no sentence
    (". Starts with a stop", 90, ". Starts with a stop"),
    (None, 60, ""),
])
def test_first_sentence(given, limit, expected):
    assert text.first_sentence(given, limit) == expected


def test_shapes_as_sizes_and_as_keras_prints_them():
    assert text.dims((28, 28, 1)) == "28x28x1"
    assert text.dims([None, 32, 3]) == "?x32x3"
    assert text.shape_tuple((None, 28, 28, 1)) == "(None, 28, 28, 1)"
    assert text.shape_tuple([10]) == "(10)"


def test_natural_key_orders_digit_runs_as_numbers():
    names = ["model10.yaml", "Model2.yaml", "model2.yaml", "model1b.yaml"]
    assert sorted(names, key=text.natural_key) == ["Model2.yaml", "model1b.yaml", "model2.yaml", "model10.yaml"]
    assert sorted(names, key=lambda n: text.natural_key(n, ignore_case=True)) == [
        "model1b.yaml", "Model2.yaml", "model2.yaml", "model10.yaml"]
    assert text.natural_key("run12b3") == ("run", 12, "b", 3, "")
