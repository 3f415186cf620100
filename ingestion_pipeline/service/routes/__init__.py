"""Routers of the HTTP service, included by create_app (ingestion_pipeline.service.app)."""
