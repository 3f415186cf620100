"""Import uploaded contact files into a multi-tenant PostgreSQL database with Dagster."""
