"""Declared datasets: the shop's four entities through the whole pipeline, references resolved
in any upload order, types as issues, merge policies, and declarations checked at load."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingestion_pipeline.datasets import (
    DATASETS,
    Dataset,
    DefinitionError,
    Field,
    FieldType,
    Reference,
    check_declarations,
)
from ingestion_pipeline.db.validation import validate_job
from ingestion_pipeline.importer import confirm_mapping
from ingestion_pipeline.issue_kinds import UnknownIssueKindError
from ingestion_pipeline.reading.mapping import ColumnMapping, MappingError
from ingestion_pipeline_tests.helpers import (
    definitions,
    import_bytes,
    job,
    register_upload,
    rows,
    run_job,
    run_sensors,
    scalar,
)

SHOP = Path(__file__).resolve().parents[1] / "samples" / "shop"


def shop_file(dataset: str) -> bytes:
    return (SHOP / dataset / f"{dataset}_2025.ndjson").read_bytes()


def ndjson(*records: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def uid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, name))


def customer(handle: str, **extra) -> dict:
    return {"customer_id": uid(handle), "name": handle, "email": f"{handle}@example.com", **extra}


def order(name: str, customer_name: str, **extra) -> dict:
    return {
        "order_id": uid(name),
        "customer_id": uid(customer_name),
        "total_amount": "10.00",
        "currency": "eur",
        "order_status": "paid",
        "order_date": "2025-02-03T14:00:00+01:00",
        **extra,
    }


@pytest.fixture
def load(engine, instance, resources, local_zone):
    """Upload and import one file of a tenant (run result, job row)."""

    def load(tenant: str, name: str, content: bytes, dataset: str = "contacts"):
        return import_bytes(engine, instance, resources, local_zone, tenant, name, content, dataset)

    return load


def open_issues(engine, job_id: str) -> list[tuple[str, str, str]]:
    return rows(
        engine,
        "SELECT kind, field, message FROM issues WHERE job_id = :j AND NOT resolved "
        "ORDER BY kind, field, message",
        j=job_id,
    )


def woken(engine, job_id: str) -> list[str]:
    return [
        r[0]
        for r in rows(
            engine,
            "SELECT job_id FROM run_requests WHERE source = :s ORDER BY request_id",
            s=f"references:{job_id}",
        )
    ]


def test_shop_files_in_reverse_order_all_complete_through_the_sensors(
    engine, instance, resources, local_zone
):
    for dataset in ("order_items", "orders", "products", "customers"):
        local_zone.write(f"uploads/shop/{dataset}/{dataset}_2025.ndjson", shop_file(dataset))
    for _ in range(8):
        run_sensors(instance, resources)
        statuses = dict(rows(engine, "SELECT dataset, status FROM import_jobs"))
        if len(statuses) == 4 and set(statuses.values()) == {"COMPLETED"}:
            break
    assert statuses == dict.fromkeys(
        ("customers", "products", "orders", "order_items"), "COMPLETED"
    )
    counts = {
        t: scalar(engine, f"SELECT count(*) FROM {t} WHERE tenant_id = 'shop'")
        for t in ("customers", "products", "orders", "order_items")
    }
    assert counts == {"customers": 4, "products": 4, "orders": 5, "order_items": 8}
    # Every reference is satisfied, with typed values.
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM order_items i LEFT JOIN orders o USING (tenant_id, order_id) "
            "LEFT JOIN products p USING (tenant_id, product_id) "
            "WHERE o.order_id IS NULL OR p.product_id IS NULL",
        )
        == 0
    )
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM orders o LEFT JOIN customers c USING (tenant_id, customer_id) "
            "WHERE c.customer_id IS NULL",
        )
        == 0
    )
    assert rows(
        engine,
        "SELECT total_amount::text, currency, raw_payload->>'channel' "
        "FROM orders WHERE external_order_id = 'SHOP-1001'",
    ) == [("54.80", "EUR", "web")]
    assert scalar(engine, "SELECT sum(quantity) FROM order_items") == 21
    # The children waited for their parents instead of going to a reviewer.
    assert scalar(engine, "SELECT count(*) FROM issues WHERE NOT resolved") == 0
    assert scalar(engine, "SELECT count(*) FROM run_requests") >= 2
    # Each job is a partition of its own dataset's assets only.
    for dataset, job_id in rows(engine, "SELECT dataset, job_id FROM import_jobs"):
        assert instance.get_dynamic_partitions(f"{dataset}_import_jobs") == [job_id]
    assert instance.get_dynamic_partitions("import_jobs") == []


def test_a_job_run_by_another_datasets_job_fails_clearly_and_stages_nothing(
    engine, instance, resources, local_zone
):
    job_id = register_upload(
        engine, local_zone, "t1", "c.ndjson", shop_file("customers"), "customers"
    )
    instance.add_dynamic_partitions("import_jobs", [job_id])
    result = (
        definitions(resources)
        .resolve_job_def("import_job")
        .execute_in_process(partition_key=job_id, instance=instance, raise_on_error=False)
    )
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert (
        f"job {job_id} imports customers: it is a partition of customers_import_jobs, "
        "not of import_jobs"
    ) in message
    assert (job(engine, job_id).status, job(engine, job_id).processed_rows) == ("PENDING", 0)
    assert scalar(engine, "SELECT count(*) FROM staging_rows") == 0


def test_a_parent_that_never_arrives_leaves_the_job_waiting_then_a_reviewer_issue(
    engine, instance, resources, load
):
    _, orders = load(
        "t1",
        "orders.ndjson",
        ndjson(order("o1", "ann"), order("o2", "bob")),
        "orders",
    )
    assert orders.status == "WAITING_FOR_REFERENCES"
    assert orders.issue_count == 2
    assert open_issues(engine, orders.job_id) == sorted(
        [
            ("missing_reference", "customer_id", f"orders.customer_id {uid(n)} not in customers")
            for n in ("ann", "bob")
        ]
    )
    # Customers arrive, but without bob: ann resolves, bob becomes a reviewer's issue.
    _, customers = load("t1", "customers.ndjson", ndjson(customer("ann")), "customers")
    assert customers.status == "COMPLETED"
    assert woken(engine, customers.job_id) == [orders.job_id]
    run_job(instance, resources, orders.job_id, "t1", "reprocess_job")
    orders = job(engine, orders.job_id)
    assert orders.status == "NEEDS_REVIEW"
    assert open_issues(engine, orders.job_id) == [
        ("missing_reference", "customer_id", f"orders.customer_id {uid('bob')} not in customers")
    ]
    assert scalar(engine, "SELECT count(*) FROM orders") == 0


def test_references_never_resolve_against_another_tenants_rows(engine, load):
    load("acme", "c.ndjson", ndjson(customer("ann")), "customers")
    _, other = load(
        "globex",
        "o.ndjson",
        ndjson(order("o1", "ann")),
        "orders",
    )
    assert other.status == "WAITING_FOR_REFERENCES"
    assert [i[0] for i in open_issues(engine, other.job_id)] == ["missing_reference"]
    # The same order for the tenant that has the customer loads at once.
    _, own = load(
        "acme",
        "o.ndjson",
        ndjson(order("o1", "ann")),
        "orders",
    )
    assert own.status == "COMPLETED"
    assert rows(engine, "SELECT tenant_id FROM orders") == [("acme",)]


def test_wrong_types_are_invalid_value_issues_naming_field_value_and_type(engine, load):
    bad = [
        order("o1", "ann", order_id="not-a-uuid"),
        order("o2", "ann", total_amount="12,50"),
        order("o3", "ann", order_date="2025-13-45T10:00:00Z"),
        order("o4", "ann", raw_payload="{not json"),
        order("o5", "ann", currency="EURO"),
        order("o6", "ann", order_status="lost"),
        order("o7", "ann", customer_email="nobody"),
        order("o8", "ann", total_amount=None),
        order("o9", "ann", total_amount="12.505"),  # more places than its scale (2)
    ]
    _, orders = load("t1", "orders.ndjson", ndjson(*bad), "orders")
    assert orders.status == "NEEDS_REVIEW"
    messages = {(k, f): m for k, f, m in open_issues(engine, orders.job_id)}
    assert messages[("invalid_value", "order_id")] == ('orders.order_id "not-a-uuid" is not a UUID')
    found = [m for _, _, m in open_issues(engine, orders.job_id)]
    places = "is not a decimal number with at most 2 decimal places"
    assert f'orders.total_amount "12,50" {places}' in found
    assert f'orders.total_amount "12.505" {places}' in found
    assert 'orders.order_date "2025-13-45T10:00:00Z" is not an ISO 8601 timestamp' in found
    assert 'orders.raw_payload "{not json" is not a JSON value' in found
    assert "currency is longer than 3 characters" in found
    assert (
        'orders.order_status "lost" is not one of pending, paid, shipped, delivered, '
        "cancelled, refunded" in found
    )
    assert '"nobody" is not a valid email address' in found
    assert "total_amount is required but empty" in found

    bad_items = [
        {
            "order_item_id": uid("i1"),
            "order_id": uid("o1"),
            "product_id": uid("p1"),
            "quantity": "2.5",
            "unit_price": "1",
            "line_total": "2.5",
        }
    ]
    _, items = load("t1", "items.ndjson", ndjson(*bad_items), "order_items")
    kinds = {(k, f) for k, f, _ in open_issues(engine, items.job_id)}
    assert ("invalid_value", "quantity") in kinds
    # A reference with a value of the wrong type is that issue only, not a missing reference.
    bad_products = [
        {"product_id": uid("p1"), "sku": "A", "name": "A", "price": "1", "active": "perhaps"},
    ]
    _, products = load("t1", "p.csv.ndjson", ndjson(*bad_products), "products")
    assert [m for _, _, m in open_issues(engine, products.job_id)] == [
        'products.active "perhaps" is not a boolean (true/false, yes/no, 1/0)'
    ]


def test_upsert_updates_exactly_the_changed_rows_and_counts_them(engine, load):
    first = [customer("ann"), customer("bob"), customer("cy", metadata={"tier": "gold"})]
    _, one = load("t1", "customers.ndjson", ndjson(*first), "customers")
    assert (one.rows_inserted, one.rows_updated, one.rows_unchanged) == (3, 0, 0)
    second = [
        customer("ann"),
        customer("bob", name="Robert"),
        customer("cy", metadata={"tier": "gold"}),
        customer("dee"),
    ]
    result, two = load("t1", "customers-v2.ndjson", ndjson(*second), "customers")
    assert two.status == "COMPLETED"
    assert (two.rows_inserted, two.rows_updated, two.rows_unchanged) == (1, 1, 2)
    checks = {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }
    assert checks[("customers", "job_status_agrees")] is True
    assert all(checks.values()), checks
    loaded_by = dict(rows(engine, "SELECT email, job_id FROM customers"))
    assert loaded_by == {
        "ann@example.com": one.job_id,
        "bob@example.com": two.job_id,
        "cy@example.com": one.job_id,
        "dee@example.com": two.job_id,
    }
    assert scalar(engine, "SELECT name FROM customers WHERE email = 'bob@example.com'") == (
        "Robert"
    )
    assert scalar(engine, "SELECT metadata->>'tier' FROM customers WHERE name = 'cy'") == "gold"


def test_a_reviewer_fixes_a_dataset_row_and_it_loads(engine, instance, resources, load):
    _, orders = load(
        "t1",
        "o.ndjson",
        ndjson(order("o1", "ann", currency="EURO")),
        "orders",
    )
    load("t1", "c.ndjson", ndjson(customer("ann")), "customers")
    from ingestion_pipeline.db.decisions import record_decisions
    from ingestion_pipeline.review_files import Decision

    with engine.begin() as conn:
        record_decisions(
            conn, job(engine, orders.job_id), [Decision(1, "fix", {"currency": "usd"})], "test"
        )
    run_job(instance, resources, orders.job_id, "t1", "reprocess_job")
    assert job(engine, orders.job_id).status == "COMPLETED"
    assert scalar(engine, "SELECT currency FROM orders") == "USD"


def test_an_unregistered_problem_code_stops_validation(engine, load):
    _, contacts = load(
        "t1", "c.csv", b"email,first_name,last_name,company\nann@acme.io,Ann,Lee,Acme\n"
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE staging_rows SET problems = '{bogus_kind:email}', status = 'ISSUE'")
        )
    with engine.begin() as conn, pytest.raises(UnknownIssueKindError, match="bogus_kind"):
        validate_job(conn, contacts.job_id, "t1", DATASETS["contacts"])


def test_declarations_that_do_not_hold_together_are_refused():
    ok = Field("id", FieldType.UUID, required=True)
    with pytest.raises(DefinitionError, match="unknown dataset 'nowhere'"):
        check_declarations(
            [
                Dataset(
                    "a",
                    (ok, Field("b_id", FieldType.UUID)),
                    "id",
                    "a",
                    (Reference("b_id", "nowhere"),),
                )
            ]
        )
    with pytest.raises(DefinitionError, match="unknown field 'missing'"):
        check_declarations([Dataset("a", (ok,), "id", "a", (Reference("missing", "a"),))])
    with pytest.raises(DefinitionError, match="natural key 'nope'"):
        check_declarations([Dataset("a", (ok,), "nope", "a")])
    with pytest.raises(DefinitionError, match="cycle"):
        check_declarations(
            [
                Dataset("a", (ok, Field("b", FieldType.UUID)), "id", "a", (Reference("b", "b"),)),
                Dataset("b", (ok, Field("a", FieldType.UUID)), "id", "b", (Reference("a", "a"),)),
            ]
        )
    with pytest.raises(DefinitionError, match=r"is text but b\.id is uuid"):
        check_declarations(
            [
                Dataset("a", (ok, Field("b")), "id", "a", (Reference("b", "b"),)),
                Dataset("b", (ok,), "id", "b"),
            ]
        )


def test_the_asset_graph_shows_the_datasets_in_dependency_order(resources):
    graph = definitions(resources).get_repository_def().asset_graph
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert parents["orders"] == {"orders/import_issues", "customers"}
    assert parents["order_items"] == {"order_items/import_issues", "orders", "products"}
    assert parents["customers"] == {"customers/import_issues"}
    assert parents["contacts"] == {"import_issues"}


def test_a_contacts_upload_named_customers_stays_contacts(engine, local_zone):
    job_id = register_upload(
        engine, local_zone, "t1", "customers.csv", b"email,first_name,last_name,company\n"
    )
    assert job(engine, job_id).dataset == "contacts"
    assert job(engine, job_id).source_key == "uploads/t1/customers.csv"


def test_a_dataset_file_waits_for_its_mapping_which_is_remembered_for_that_dataset_only(
    engine, instance, resources, local_zone, load
):
    header = "Bestellung,Kunde,Summe,Waehrung,Status,Datum,Qty\n"
    body = (header + f"{uid('o1')},{uid('ann')},10.00,EUR,paid,2025-02-03T14:00:00Z,1\n").encode()
    load("t1", "c.ndjson", ndjson(customer("ann")), "customers")
    _, orders = load("t1", "bestellungen.csv", body, "orders")
    assert orders.status == "NEEDS_MAPPING"
    # "Status" is a declared alias of order_status; the German names are not.
    suggestion = ColumnMapping.from_json(orders.mapping)
    assert suggestion.fields == {"order_status": ["Status"]}
    assert suggestion.unmapped == [
        "order_id",
        "customer_id",
        "total_amount",
        "currency",
        "order_date",
    ]
    with pytest.raises(MappingError, match="unknown field 'email'"):
        confirm_mapping(engine, local_zone, orders, {"email": "Kunde"})
    confirm_mapping(
        engine,
        local_zone,
        orders,
        {
            "order_id": "Bestellung",
            "customer_id": "Kunde",
            "total_amount": "Summe",
            "currency": "Waehrung",
            "order_date": "Datum",
        },
    )
    run_job(instance, resources, orders.job_id, "t1")
    assert job(engine, orders.job_id).status == "COMPLETED"
    # The next orders file of that shape maps itself; an order_items file of the same header
    # (its "Qty" is an alias of quantity) is not read with the orders mapping.
    second = body.replace(uid("o1").encode(), uid("o2").encode())
    _, again = load("t1", "bestellungen-2.csv", second, "orders")
    assert again.status == "COMPLETED"
    assert again.mapping["source"] == "remembered"
    _, items = load("t1", "bestellungen.csv", body, "order_items")
    assert items.status == "NEEDS_MAPPING"
    assert items.mapping["dataset"] == "order_items"
    assert items.mapping["fields"] == {"quantity": ["Qty"]}
