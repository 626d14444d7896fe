"""The ``completion`` stage: Zhao & Qi's map completion — the parser's map M_α, the landmark-drawn map M_β
and Algorithm 1 → M_γ, the face without its occluder, and the occlusion mask.

Nothing is trained: ``faceparse compose --stage completion`` assembles a bundle from the two models it
composes (params ``completion.compose``: bundle dirs or ``models:/`` URIs) — their weights, their metas,
their registry versions and the algorithm's settings — and the one path takes it from there (evaluate,
register, promote, package, serve, canary). Primary metric: mean F1 inside the occluded face region
(``f1_occluded_gamma``, higher is better), on data with complete ground truth (the synthetic set's
``complete/`` and ``occlusion/``).
"""
