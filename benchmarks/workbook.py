"""The largest sheet Excel writes (1,048,575 data rows x 5 columns) read by the former whole-sheet
reader (calamine) as the baseline, beside our import of the same file; run by `make bench`.

`python benchmarks/workbook.py generate PATH ROWS` writes the workbook (openpyxl, write-only);
`python benchmarks/workbook.py calamine PATH` reads every cell as text with calamine and prints
rows and seconds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def generate(path: Path, rows: int) -> None:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Contacts")
    sheet.append(["Email", "First Name", "Last Name", "Company", "Phone"])
    for i in range(rows):
        sheet.append(
            [f"user{i}@acme{i % 97}.io", f"First{i % 5000}", f"Last{i % 7919}",
             f"Company {i % 1000}", f"+4930{i:08d}"]
        )  # fmt: skip
    book.save(path)


def calamine(path: Path) -> None:
    from python_calamine import CalamineWorkbook

    from ingestion_pipeline.reading.sheets import number_text

    started = time.perf_counter()
    sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("Contacts")
    count = 0
    for row in sheet.iter_rows():
        [c if isinstance(c, str) else number_text(repr(c)) for c in row]
        count += 1
    print(count - 1, f"{time.perf_counter() - started:.2f}")


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        calamine(Path(sys.argv[2]))
