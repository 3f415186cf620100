"""Row rules: the pandera model and the email verdicts that must agree with email-validator."""

from __future__ import annotations

import pandas as pd
import pytest

from ingestion_pipeline.emails import is_valid_email, library_verdict, normalize_email
from ingestion_pipeline.schemas import row_problems


def frame(*rows: tuple) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["email", "first_name", "last_name", "company"], dtype="str")
    df["email"] = normalize_email(df["email"])
    return df


def test_clean_rows_have_no_problems():
    assert row_problems(frame(("Ann@Acme.io", "Ann", "Lee", "Acme"))).tolist() == ["{}"]


def test_each_missing_field_is_its_own_problem_in_field_order():
    problems = row_problems(
        frame(
            (None, "Ann", None, "Acme"),
            ("bob@acme.io", None, "Stone", None),
        )
    )
    assert problems.tolist() == [
        "{missing_field:email,missing_field:last_name}",
        "{missing_field:first_name,missing_field:company}",
    ]


def test_invalid_email_is_reported_but_a_missing_one_is_not_also_invalid():
    problems = row_problems(frame(("not-an-email", "A", "B", "C"), (None, "A", "B", "C")))
    assert problems.tolist() == ["{invalid_email:email}", "{missing_field:email}"]


def test_normalize_email_trims_lowercases_and_blanks_to_missing():
    values = pd.Series(["  Ann@ACME.io\t", "   ", None], dtype="str")
    assert normalize_email(values).tolist()[:1] == ["ann@acme.io"]
    assert normalize_email(values).isna().tolist() == [False, True, True]


CORPUS = [
    # plain addresses the fast path takes
    "ann@acme.io",
    "first.last@sub.example.co.uk",
    "o'neil+tag@acme.io",
    "x_y-z@a-b.c-d.com",
    "a!#$%&'*+/=?^_`{|}~-@acme.io",
    "1234@numbers.io",
    # what only the library may judge
    "jürgen@globex.de",
    "user@bücher.de",
    "user@xn--bcher-kva.de",
    '"quoted local"@acme.io',
    "user@localhost",
    "user@host.local",
    "user@site.test",
    "user@example.invalid",
    "user@127.0.0.1",
    "user@[127.0.0.1]",
    "a" * 64 + "@acme.io",
    "a" * 65 + "@acme.io",
    "user@" + "a" * 63 + ".com",
    "user@" + "a" * 64 + ".com",
    "user@" + ".".join(["abcdefghi"] * 26) + ".com",
    # invalid in every way people get it wrong
    "not-an-email",
    "@acme.io",
    "ann@",
    "ann@@acme.io",
    "ann@acme",
    "ann@acme.",
    "ann@.acme.io",
    "ann@acme..io",
    ".ann@acme.io",
    "ann.@acme.io",
    "an..n@acme.io",
    "ann@-acme.io",
    "ann@acme-.io",
    "ann@acme.i",
    "ann@acme.123",
    "ann acme@acme.io",
    "ann@acme_corp.io",
    "ann,lee@acme.io",
    "ann@acme.io,",
    "ann@acme.io; bob@acme.io",
    "mailto:ann@acme.io",
    "<ann@acme.io>",
]


@pytest.mark.parametrize("address", CORPUS)
def test_vectorized_verdict_agrees_with_email_validator(address):
    expected = library_verdict(address) is None
    assert is_valid_email(pd.Series([address], dtype="str")).tolist() == [expected]


def test_verdicts_agree_on_a_generated_corpus_in_bulk():
    import random

    rng = random.Random(7)
    alphabet = "abcxyz019.-_+@ "
    generated = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 20))) for _ in range(3000)
    ]
    generated += [f"user{i}@host{i % 7}.example.com" for i in range(200)]
    series = pd.Series(generated, dtype="str")
    expected = [library_verdict(a) is None for a in generated]
    assert is_valid_email(series).tolist() == expected
    assert sum(expected) > 200  # the corpus holds both verdicts
