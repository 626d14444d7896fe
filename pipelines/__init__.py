"""The faceparse Kubeflow pipeline: pipeline.py (DAG), compile.py, run_local.py, submit.py."""
