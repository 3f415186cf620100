"""Reading files as people export them: encodings, delimiters, quoting, headers, chunks."""

from __future__ import annotations

import codecs
import io
import json
import random

import pandas as pd
import pytest

from ingestion_pipeline.datasets import DATASETS
from ingestion_pipeline.db.staging import data_json
from ingestion_pipeline.normalize import normalize_series, normalize_text
from ingestion_pipeline.reading import UnreadableFileError, chunk_columns, open_upload
from ingestion_pipeline.reading.mapping import ColumnMapping, MappingError, person_mapping
from ingestion_pipeline.reading.records import ARROW_BLOCK_BYTES, json_objects

SHOP_CUSTOMERS = DATASETS["customers"]
SHOP_ORDERS = DATASETS["orders"]
SHOP_ORDER_ITEMS = DATASETS["order_items"]


def read_all(data: bytes, name: str = "upload.csv", chunk_size: int = 1000):
    source = open_upload(io.BytesIO(data), name)
    frames = [chunk.frame for chunk in source.chunks(chunk_size)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return source.format, frame


def mapping_of(data: bytes, name: str = "upload.csv"):
    return open_upload(io.BytesIO(data), name).mapping


def records(frame: pd.DataFrame) -> list[dict]:
    out = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in out:
        row["extra"] = json.loads(row["extra"]) if row["extra"] else None
    return out


def test_european_excel_semicolon_cp1252_crlf_and_blank_lines():
    data = (
        "E-Mail;Vorname;Nachname;Firma\r\n"
        "jürgen@globex.de;Jürgen;Müller;Globex, München\r\n"
        "\r\n"
        ";;;\r\n"
        "anna@globex.de;Anna;Schmidt;Globex\r\n"
    ).encode("cp1252")
    fmt, frame = read_all(data)
    assert (fmt.encoding, fmt.delimiter) == ("cp1252", ";")
    assert records(frame) == [
        {
            "row_number": 1,
            "email": "jürgen@globex.de",
            "first_name": "Jürgen",
            "last_name": "Müller",
            "company": "Globex, München",
            "extra": None,
        },
        {
            "row_number": 2,
            "email": "anna@globex.de",
            "first_name": "Anna",
            "last_name": "Schmidt",
            "company": "Globex",
            "extra": None,
        },
    ]


def test_excel_unicode_text_is_utf16_with_tabs():
    text = "Email\tFirst Name\tLast Name\tCompany\r\nzoë@example.org\tZoë\tŁuk\t株式会社\r\n"
    fmt, frame = read_all(text.encode("utf-16"), "export.txt")
    assert (fmt.encoding, fmt.delimiter) == ("utf-16", "\t")
    assert records(frame)[0]["last_name"] == "Łuk"
    assert records(frame)[0]["company"] == "株式会社"


def test_utf8_bom_header_padding_case_and_reordered_extra_columns():
    data = codecs.BOM_UTF8 + (
        b' "COMPANY " ,Notes, EMAIL ,Last_Name,first name,Phone\n'
        b"Acme,likes tea,ann@acme.io,Lee,Ann,555\n"
    )
    fmt, frame = read_all(data)
    assert fmt.encoding == "utf-8-sig"
    assert mapping_of(data).fields == {
        "email": ["EMAIL"],
        "first_name": ["first name"],
        "last_name": ["Last_Name"],
        "company": ["COMPANY"],
    }
    (row,) = records(frame)
    assert (row["email"], row["first_name"], row["last_name"], row["company"]) == (
        "ann@acme.io",
        "Ann",
        "Lee",
        "Acme",
    )
    assert row["extra"] == {"Notes": "likes tea", "Phone": "555"}


def test_quoted_delimiters_quotes_and_newlines_inside_fields():
    data = (
        b"email,first_name,last_name,company,notes\r\n"
        b'"a@b.io","Ann","O\'Neil","Acme, Inc","She said ""hi""\r\nthen left"\r\n'
        b"c@d.io,Cy,Doe,Co,plain\r\n"
    )
    _, frame = read_all(data)
    first, second = records(frame)
    assert first["company"] == "Acme, Inc"
    assert first["extra"] == {"notes": 'She said "hi"\r\nthen left'}
    assert second["row_number"] == 2


def test_trailing_delimiters_are_not_columns_and_ragged_rows_keep_their_values():
    data = (
        b"email;first_name;last_name;company;\n"
        b"a@b.io;Ann;Lee;Acme;\n"
        b"c@d.io;Cy;Doe\n"
        b"e@f.io;Eve;Ray;Co;;surplus\n"
    )
    fmt, frame = read_all(data)
    assert fmt.delimiter == ";"
    rows = records(frame)
    assert rows[0]["extra"] is None
    assert rows[1]["company"] is None
    assert rows[2]["extra"] == {"column_6": "surplus"}
    # A trailing delimiter is fine, and so are too few fields (exports leave trailing empty
    # fields out); values past the header (whose own trailing delimiter makes 5) are flagged.
    assert [r["record_problem"] for r in rows] == [None, None, "6/5"]


def test_latin1_fallback_for_bytes_cp1252_cannot_decode():
    data = "email,first_name,last_name,company\na@b.io,Ann,Lee,Acme\x81\n".encode("latin-1")
    fmt, frame = read_all(data)
    assert fmt.encoding == "latin-1"
    assert records(frame)[0]["company"] == "Acme\x81"


def test_comma_in_semicolon_header_does_not_fool_the_delimiter_choice():
    data = b"email;first_name;last_name;company;notes, misc\na@b.io;Ann;Lee;Acme, Inc;x, y\n"
    fmt, frame = read_all(data)
    assert fmt.delimiter == ";"
    assert records(frame)[0]["company"] == "Acme, Inc"
    assert records(frame)[0]["extra"] == {"notes, misc": "x, y"}


@pytest.mark.parametrize(
    ("block_bytes", "sizes"),
    # Arrow cuts whole chunks below the header; the strict reader counts the header in chunk one.
    [(ARROW_BLOCK_BYTES, [10, 10, 5]), (0, [9, 10, 6])],
    ids=["arrow", "strict"],
)
def test_chunks_are_bounded_and_record_numbers_continue_across_chunks(block_bytes, sizes):
    body = "".join(f"u{i}@x.io,F{i},L{i},C\n" for i in range(1, 26))
    data = ("email,first_name,last_name,company\n" + body).encode()
    source = open_upload(io.BytesIO(data), "many.csv")
    source.arrow_block_bytes = block_bytes
    chunks = list(source.chunks(10))
    assert [len(c.frame) for c in chunks] == sizes
    numbers = pd.concat([c.frame["row_number"] for c in chunks]).tolist()
    assert numbers == list(range(1, 26))
    assert chunks[-1].bytes_read == len(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "the file is empty"),
        (b"   \r\n\r\n", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary file"),
        (bytes(range(256)) * 4, "binary file"),
        (b"name,phone\nAnn,555\n", "no email column found; the header has: name, phone"),
    ],
)
def test_unreadable_files_are_rejected_with_the_file_name_and_reason(data, expected):
    with pytest.raises(UnreadableFileError) as caught:
        read_all(data, "bad-upload.csv")
    assert str(caught.value).startswith("bad-upload.csv: ")
    assert expected in str(caught.value)


def test_header_only_file_has_no_records():
    fmt, frame = read_all(b"email,first_name,last_name,company\r\n")
    assert fmt.header[0] == "email"
    assert frame.empty


def test_invalid_utf8_after_the_sample_names_the_exact_record():
    head = "email,first_name,last_name,company\nzoë@b.io,Zoë,Lee,Acme\n"
    head += "a@b.io,Ann,Lee,Acme\n" * 19_999
    data = head.encode() + b"c@d.io,Bad\xff\xfe,Byte,Co\n" + b"e@f.io,Eve,Ray,Co\n"
    with pytest.raises(UnreadableFileError) as caught:
        read_all(data, "mixed.csv", chunk_size=5000)
    assert str(caught.value) == (
        "mixed.csv, record 20001: invalid utf-8 bytes (b'\\xff\\xfe' in first_name)"
    )


def test_ascii_head_then_cp1252_bytes_is_read_as_cp1252():
    head = "email,first_name,last_name,company\n" + "a@b.io,Ann,Lee,Acme\n" * 20_000
    data = head.encode() + "c@d.io,Zoë,Müller,Café\n".encode("cp1252")
    fmt, frame = read_all(data, chunk_size=5000)
    assert fmt.encoding == "utf-8"
    last = records(frame)[-1]
    assert (last["row_number"], last["first_name"], last["company"]) == (20_001, "Zoë", "Café")


def test_a_missing_required_column_is_left_unmapped_for_a_person_not_rejected():
    mapping = mapping_of(b"email,first_name,company\na@b.io,Ann,Acme\n")
    assert mapping.unmapped == ["last_name"]


def test_several_columns_for_one_field_take_the_first_non_blank_per_row_the_rest_stay_extra():
    data = b"email,e-mail,first_name,last_name,company\na@b.io,x@b.io,A,L,C\n,y@b.io,B,M,C\n"
    assert mapping_of(data).fields["email"] == ["email", "e-mail"]
    _, frame = read_all(data)
    assert [(r["email"], r["extra"]) for r in records(frame)] == [
        ("a@b.io", {"e-mail": "x@b.io"}),
        ("y@b.io", {"e-mail": "y@b.io"}),
    ]


def test_notes_above_the_header_and_summary_lines_below_the_data_are_reported_not_read():
    data = (
        b'Notes:\n"Exported for Q3, see the wiki."\n\n'
        b"First Name,Last Name,Email Address,Company\n"
        b"Ann,Lee,ann@acme.io,Acme\nBob,Ray,bob@acme.io,Acme\n\n"
        b'Total,,,2\n"Confidential Information - Do Not Distribute"\n'
    )
    source = open_upload(io.BytesIO(data), "r.csv")
    frame = pd.concat([c.frame for c in source.chunks(1)], ignore_index=True)
    assert [p[1] for p in source.format.preamble] == ["Notes:", "Exported for Q3, see the wiki."]
    assert list(frame["email"]) == ["ann@acme.io", "bob@acme.io"]
    assert source.footer == ["Total 2", "Confidential Information - Do Not Distribute"]


def test_a_trailing_line_that_looks_like_data_is_still_a_record():
    data = b"email,first_name,last_name,company\nann@acme.io,Ann,Lee,Acme\nbob@acme.io,,,\n,Cy,,\n"
    source = open_upload(io.BytesIO(data), "t.csv")
    frame = pd.concat([c.frame for c in source.chunks(2)], ignore_index=True)
    # An address is data whatever else is blank; a lone name with no address is a footer.
    assert list(frame["email"]) == ["ann@acme.io", "bob@acme.io"]
    assert source.footer == ["Cy"]


def test_a_vcard_cut_off_before_end_is_rejected_naming_the_card():
    data = b"BEGIN:VCARD\nFN:Ann Lee\nEMAIL:ann@acme.io\nEND:VCARD\nBEGIN:VCARD\nFN:Bob\n"
    with pytest.raises(UnreadableFileError) as caught:
        read_all(data, "c.vcf")
    assert str(caught.value) == "c.vcf, record 2 (line 5): the last card has no END:VCARD"


# Other datasets: their declared fields and aliases, no contacts profiles or hints.

ORDER = "5f0c6a52-8f3e-4c4e-9d51-0c7f9a0d2b11"
CUSTOMER = "0b7e4a0e-2a8f-4a57-8a0d-3f6f1c9e7d22"


def test_an_orders_csv_reads_into_the_orders_fields_with_a_json_payload_as_text():
    data = (
        b"order_id,external_order_id,customer_id,customer_name,customer_email,total_amount,"
        b"currency,order_status,order_date,raw_payload,created_at,notes\n"
        + f"{ORDER},A-1001,{CUSTOMER},Ann Lee,ann@acme.io,37.50,eur,paid,"
        f'2024-05-01T10:00:00Z,"{{""lines"": 2, ""gift"": true}}",2024-05-01T10:00:05Z,rush\n'
        "o-2,,,,,,,,,,,\n,,,,,37.50,,,,,,\n,,,Total,,37.50,,,,,,\n".encode()
    )
    source = open_upload(io.BytesIO(data), "orders.csv", SHOP_ORDERS)
    frame = pd.concat([c.frame for c in source.chunks(100)], ignore_index=True)
    assert list(frame.columns) == list(chunk_columns(SHOP_ORDERS))
    assert chunk_columns(SHOP_ORDERS) == (
        "row_number",
        "order_id",
        "external_order_id",
        "customer_id",
        "customer_name",
        "customer_email",
        "total_amount",
        "currency",
        "order_status",
        "order_date",
        "raw_payload",
        "created_at",
        "extra",
    )
    row, key_only = records(frame)
    assert row == {
        "row_number": 1,
        "order_id": ORDER,
        "external_order_id": "A-1001",
        "customer_id": CUSTOMER,
        "customer_name": "Ann Lee",
        "customer_email": "ann@acme.io",
        "total_amount": "37.50",
        "currency": "eur",
        "order_status": "paid",
        "order_date": "2024-05-01T10:00:00Z",
        "raw_payload": '{"lines": 2, "gift": true}',
        "created_at": "2024-05-01T10:00:05Z",
        "extra": {"notes": "rush"},
    }
    # A filled order_id is an order however bare; with none, trailing lines are footers.
    assert (key_only["order_id"], key_only["total_amount"]) == ("o-2", None)
    assert source.footer == ["37.50", "Total 37.50"]
    assert source.mapping.dataset == "orders"
    assert source.mapping.unmapped == []


def test_an_order_items_ndjson_keeps_numbers_booleans_and_objects_as_json_text():
    lines = [
        {
            "order_item_id": "11111111-1111-4111-8111-111111111111",
            "order_id": ORDER,
            "product_id": "22222222-2222-4222-8222-222222222222",
            "quantity": 2,
            "unit_price": 12.5,
            "line_total": 25.0,
            "gift": True,
            "options": {"colour": "red"},
        },
        {"order_item_id": "33333333-3333-4333-8333-333333333333", "quantity": None},
    ]
    data = ("\n".join(json.dumps(line) for line in lines) + "\nnot json\n").encode()
    source = open_upload(io.BytesIO(data), "items.ndjson", SHOP_ORDER_ITEMS)
    frame = pd.concat([c.frame for c in source.chunks(100)], ignore_index=True)
    assert list(frame.columns) == [*chunk_columns(SHOP_ORDER_ITEMS), "parse_error"]
    first, second, bad = records(frame)
    assert first == {
        "row_number": 1,
        "order_item_id": "11111111-1111-4111-8111-111111111111",
        "order_id": ORDER,
        "product_id": "22222222-2222-4222-8222-222222222222",
        "quantity": "2",
        "unit_price": "12.5",
        "line_total": "25.0",
        "extra": {"gift": True, "options": {"colour": "red"}},
        "parse_error": None,
    }
    assert (second["order_item_id"], second["quantity"], second["order_id"]) == (
        "33333333-3333-4333-8333-333333333333",
        None,
        None,
    )
    assert bad["parse_error"].startswith("not valid JSON")
    assert bad["extra"] == {"_raw": "not json"}


def test_declared_aliases_map_ignoring_case_and_punctuation():
    data = (
        b"ID,Order ID,Product ID,Qty,Unit Price,Line Total\n"
        b"11111111-1111-4111-8111-111111111111,o,p,3,1.50,4.50\n"
    )
    source = open_upload(io.BytesIO(data), "items.csv", SHOP_ORDER_ITEMS)
    assert source.mapping.fields == {
        "order_item_id": ["ID"],
        "order_id": ["Order ID"],
        "product_id": ["Product ID"],
        "quantity": ["Qty"],
        "unit_price": ["Unit Price"],
        "line_total": ["Line Total"],
    }
    frame = pd.concat([c.frame for c in source.chunks(100)], ignore_index=True)
    assert records(frame)[0]["quantity"] == "3"
    assert records(frame)[0]["extra"] is None


def test_a_file_with_nothing_of_the_dataset_is_refused_and_a_vcard_is_contacts_only():
    with pytest.raises(UnreadableFileError) as caught:
        open_upload(io.BytesIO(b"name,phone\nAnn,555\n"), "people.csv", SHOP_ORDERS)
    assert str(caught.value) == (
        "people.csv: no column of orders found; the header has: name, phone"
    )
    card = b"BEGIN:VCARD\nFN:Ann Lee\nEMAIL:ann@acme.io\nEND:VCARD\n"
    with pytest.raises(UnreadableFileError) as caught:
        open_upload(io.BytesIO(card), "c.vcf", SHOP_CUSTOMERS)
    assert str(caught.value) == "c.vcf: vCard files hold contacts, not customers"


def test_mapping_json_names_the_dataset_only_when_it_is_not_contacts():
    contacts = mapping_of(b"email,first_name,last_name,company\na@b.io,Ann,Lee,Acme\n")
    assert list(contacts.to_json()) == ["fields", "methods", "profile", "empty"]
    assert ColumnMapping.from_json(contacts.to_json()).dataset == "contacts"
    data = b"id,customer_name,email,created_at\nc-1,Ann Lee,ann@acme.io,2024-01-01\n"
    customers = open_upload(io.BytesIO(data), "customers.csv", SHOP_CUSTOMERS).mapping
    stored = json.loads(json.dumps(customers.to_json()))
    assert stored["dataset"] == "customers"
    assert stored["fields"] == {
        "customer_id": ["id"],
        "name": ["customer_name"],
        "email": ["email"],
        "created_at": ["created_at"],
    }
    assert ColumnMapping.from_json(stored) == customers
    assert customers.describe().splitlines()[0] == 'customer_id <- "id" (alias)'


def test_an_orders_mapping_lists_its_own_missing_required_fields_and_needs_no_email():
    data = b"order_id,total_amount,currency,order_status,order_date,cust\no,1,EUR,paid,2024\n"
    source = open_upload(io.BytesIO(data), "orders.csv", SHOP_ORDERS)
    assert source.mapping.unmapped == ["customer_id"]
    assert "customer_id <- not mapped" in source.mapping.describe().splitlines()
    fixed = person_mapping(source.format.header, {"customer_id": "CUST"}, source.suggestion)
    assert (fixed.fields["customer_id"], fixed.dataset, fixed.unmapped) == (["cust"], "orders", [])
    with pytest.raises(MappingError, match="unknown field 'first_name'"):
        person_mapping(source.format.header, {"first_name": "cust"}, source.suggestion)


HEADER = b"email,first_name,last_name,company,notes\n"
ROWS = b"".join(b"u%d@x.io,F%d,L%d,Acme,n%d\n" % (i, i, i, i) for i in range(1, 40))
# Files a strict reader and Arrow must read alike, each with its trouble in the middle so that
# Arrow reads blocks before it and the strict reader the rest.
SAME_RECORDS = {
    "plain": HEADER + ROWS,
    "quoted": HEADER
    + ROWS
    + b'"q@x.io","Ann ""Nan""","Lee, Jr","Acme\r\nInc","multi\nline"\r\n'
    + b'"",,,,\n'
    + ROWS,
    "blank and delimiter-only lines": HEADER + ROWS + b"\n\n,,,,\n ,  , , ,\n" + ROWS,
    "spaces-only line": HEADER + ROWS + b"   \n" + ROWS,
    "footer-like line between data": HEADER + ROWS + b"Total,,,,\n" + ROWS + b"Total,78,,,\n",
    "ragged records": HEADER + ROWS + b"r@x.io,R\nr2@x.io,R,L,C,N,past\n" + ROWS,
    "quote inside an unquoted field": HEADER + ROWS + b'o@x.io,Ann,O"Neil,Acme,\n' + ROWS,
    "NUL byte": HEADER + ROWS + b"nul@x.io,A\x00B,L,C,\n" + ROWS,
    "notes above the header and a BOM": codecs.BOM_UTF8
    + b'Export of "contacts"\n\n'
    + HEADER
    + ROWS,
    "semicolons": HEADER.replace(b",", b";") + ROWS.replace(b",", b";") + b'"a;b@x.io";"x"\n',
    "no final line feed": HEADER + ROWS + b"last@x.io,L,L,L,L",
    "CR line endings in the middle": HEADER + ROWS + ROWS.replace(b"\n", b"\r") + ROWS,
    "text after a closing quote": HEADER + ROWS + b'"bad"x@x.io,A,B,C,\n' + ROWS,
    "unterminated quote": HEADER + ROWS + b'open@x.io,"Ann,L,C,\n' + ROWS,
    "invalid UTF-8": HEADER + ROWS * 3 + b"bad@x.io,Zo\xeb,L,C,\n" + ROWS,
    "ASCII sample, cp1252 later": HEADER + ROWS * 300 + b"cp@x.io,Zo\xeb,L,C,\n" + ROWS,
}


def read_with(data: bytes, block_bytes: int):
    """Every chunk's frame, the footer and where the strict reader started, or the error."""
    source = open_upload(io.BytesIO(data), "same.csv")
    source.arrow_block_bytes = block_bytes
    try:
        frames = [chunk.frame for chunk in source.chunks(7 if len(data) < 10_000 else 1000)]
    except UnreadableFileError as exc:
        return str(exc), None, None
    return pd.concat(frames, ignore_index=True), source.footer, source.strict_from


@pytest.mark.parametrize("data", SAME_RECORDS.values(), ids=SAME_RECORDS.keys())
def test_arrow_blocks_and_the_strict_reader_read_the_same_records(data):
    strict, strict_footer, _ = read_with(data, 0)
    # Blocks of about one record, of several, and of a whole (small) file.
    for block_bytes in (max(64, len(data) // 100), 700, ARROW_BLOCK_BYTES):
        found, footer, _ = read_with(data, block_bytes)
        if isinstance(strict, str):
            assert found == strict
        else:
            pd.testing.assert_frame_equal(found, strict)
            assert footer == strict_footer


def test_arrow_reads_well_formed_files_and_hands_the_rest_to_the_strict_reader_where_unsure():
    assert read_with(SAME_RECORDS["quoted"], 64)[2] is None
    assert read_with(SAME_RECORDS["notes above the header and a BOM"], 64)[2] is None
    assert read_with(SAME_RECORDS["footer-like line between data"], 64)[2] is None
    # Arrow read the first 39 records; the strict reader the ragged ones and the rest.
    frame, _, strict_from = read_with(SAME_RECORDS["ragged records"], 64)
    assert 1 < strict_from <= 40
    assert frame["record_problem"].dropna().tolist() == ["6/5"]
    message = read_with(SAME_RECORDS["text after a closing quote"], 64)[0]
    assert message == (
        "same.csv, record 40 (line 41): a closing quote is followed by more text; a quote "
        'inside a quoted field is written twice ("")'
    )


def test_extra_columns_become_json_objects_of_their_non_blank_values():
    values = [None, "a", 'q"uote', "back\\slash", "sl/ash", "ünï", "😀", "tab\there", "nl\nx"]
    values += ["\u2028", "", "x" * 50, "\x00"]
    rng = random.Random(3)
    for _ in range(200):
        names = rng.choice([["notes"], ["a", "b"], ['we"ird', "x\\y", "ü"]])
        size = rng.randint(1, 30)
        # A chunk's rows may be numbered from anywhere: the objects follow their rows.
        index = pd.RangeIndex(100, 100 + size)
        frame = pd.DataFrame(
            {
                n: pd.Series([rng.choice(values) for _ in range(size)], dtype="str", index=index)
                for n in names
            }
        )
        found = json_objects(frame)
        assert str(found.dtype) == "str"
        for i in range(size):
            expected = {n: frame[n].iloc[i] for n in names if not pd.isna(frame[n].iloc[i])}
            if expected:
                assert json.loads(found.iloc[i]) == expected
            else:
                assert pd.isna(found.iloc[i])


def test_json_lines_split_at_line_feeds_only():
    frame = pd.DataFrame({"note": ["a\u2028b", "c\u0085d", "e\nf"]})
    lines = data_json(frame)
    assert [json.loads(line)["note"] for line in lines] == ["a\u2028b", "c\u0085d", "e\nf"]


def test_every_value_is_trimmed_and_nfc_whatever_its_position_and_the_single_value_agrees():
    values = ["  Zoe\u0301 ", "A\u030angstr\u00f6m", "plain", "\u00a0nbsp\u00a0", "", "   ", None]
    values += ["\u1e9b\u0323", "\ufb01", "Ωmega\u0301"]
    column = pd.Series(values, dtype="str", index=pd.RangeIndex(500, 500 + len(values)))
    found = normalize_series(column)
    assert list(found.index) == list(column.index)
    assert [None if pd.isna(v) else v for v in found] == [normalize_text(v) for v in values]
    assert found.iloc[0] == "Zoé" and len(found.iloc[0]) == 3
