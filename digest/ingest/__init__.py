"""Ingestion: JSON, Markdown and feeds to validated records (pure), and an idempotent upsert."""

from digest.ingest.load import ImportBatch, Source, expand_paths, load_paths, load_sources
from digest.ingest.records import ArticleRecord, RecordError, build_record
from digest.ingest.store import ImportCounts, upsert_articles

__all__ = [
    "ArticleRecord",
    "ImportBatch",
    "ImportCounts",
    "RecordError",
    "Source",
    "build_record",
    "expand_paths",
    "load_paths",
    "load_sources",
    "upsert_articles",
]
