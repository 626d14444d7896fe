"""The ``landmarks`` stage: a MobileNetV3 regressing the 68 iBUG points (Zhao & Qi's N_lmk).

Loss: squared L2 between predicted and true points (the seed's eq. 1), in normalised image coordinates.
Metric (the field's): NME normalised by the inter-ocular distance (outer eye corners, 300-W), lower is
better; beside it the NME of the mean training shape (``mean_shape_nme``, the baseline), per region, AUC and
failure rate at 0.08, and the NME of the points an occluder hides vs the visible ones (synthetic data knows).
"""
