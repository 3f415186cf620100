"""Database: schema, migrations, engines and the set-based SQL of the import."""
