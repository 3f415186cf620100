"""Generate a realistic contacts export for benchmarks.

About 3% invalid emails, 2% blank required fields, 1% in-file duplicates that differ in case
and whitespace, non-ASCII names, two extra columns. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

FIRST = [
    "Ann",
    "Bob",
    "Zoë",
    "José",
    "Łukasz",
    "Søren",
    "Amélie",
    "Jürgen",
    "Aoife",
    "Chen",
    "Priya",
    "Olúwaseun",
    "Mateo",
    "Ngọc",
    "Fatima",
    "Ιωάννης",
]
LAST = [
    "Lee",
    "Müller",
    "García",
    "Nowak",
    "Øberg",
    "O'Neil",
    "Dubois",
    "Kowalski",
    "Smith",
    "Nguyễn",
    "Rossi",
    "Haddad",
    "Иванов",
    "Tanaka",
    "Murphy",
    "Silva",
]
COMPANY = [
    "Acme",
    "Globex GmbH",
    "Initech",
    "Umbrella, Inc",
    "Hooli",
    "Société Générale",
    "Stark Industries",
    "Wayne Enterprises",
    "Pied Piper",
    "株式会社サンプル",
]
CITY = ["Berlin", "Paris", "São Paulo", "Kraków", "Zürich", "Dublin", "Tokyo", "Austin"]


def email_for(i: int) -> str:
    return f"user{i}.{i % 97}@example{i % 1000}.com"


def generate(path: Path, rows: int, seed: int = 7) -> dict[str, int]:
    """Write `rows` records to `path`; returns how many of each defect were planted."""
    rng = random.Random(seed)
    counts = {"invalid_email": 0, "blank_field": 0, "duplicate": 0}
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["Email", "First Name", "Last Name", "Company", "Phone", "City"])
        for i in range(1, rows + 1):
            email = email_for(i)
            roll = rng.random()
            if roll < 0.03:
                email = email.replace("@", rng.choice(["", "@@", " at "]))
                counts["invalid_email"] += 1
            elif roll < 0.04 and i > 10:
                email = "  " + email_for(rng.randint(1, i - 1)).upper() + " "
                counts["duplicate"] += 1
            first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANY)
            if rng.random() < 0.02:
                counts["blank_field"] += 1
                which = rng.randrange(3)
                first, last, company = (
                    "" if which == 0 else first,
                    "" if which == 1 else last,
                    "  " if which == 2 else company,
                )
            phone = f"+1 555 {rng.randint(1000000, 9999999)}"
            writer.writerow([email, first, last, company, phone, rng.choice(CITY)])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(generate(args.path, args.rows))


if __name__ == "__main__":
    main()
