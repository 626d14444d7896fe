"""The ``parser`` stage: FP-LIIF face parsing (image → per-pixel class logits at any output size).

Training step: encode + query the sampled output pixels, CE + λ·edge-aware CE (``loss``); validation:
a confusion matrix summed over ranks → per-class F1 / IoU, mean F1 (primary, higher is better).
"""
