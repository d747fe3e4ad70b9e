"""Data for the templates: a company's own files (local or S3-compatible) and seeded synthetic sets."""

from workloads.data.sources import DataError, read_image_folder, read_table, require_columns

__all__ = ["DataError", "read_image_folder", "read_table", "require_columns"]
