"""Data files shipped with the package (see each folder's SOURCE.md and LICENSE)."""
