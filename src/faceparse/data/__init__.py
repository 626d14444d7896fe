"""Datasets: the embedded synthetic faces, real-dataset ingestion and the canonical manifest."""
