"""The ``recon3d`` stage: 3D face reconstruction (Zhao & Qi 3.4–3.5, after Deng et al. 2019) — a ResNet
regresses the ICT-FaceKit face model's coefficients (identity, expression, albedo, SH light, pose) from a
face crop; a differentiable renderer written here (faceparse.face3d) turns them into an image, landmarks
and a mesh; the loss is eq. 16 (faceparse.face3d.loss). Trained and scored on the synthetic 3D set
(faceparse.data.synth3d: ``recon3d.data``), whose true geometry is known.

Validation and test metrics (faceparse.face3d.metrics): vertex errors after similarity alignment to the true
mesh, mean and 90th percentile per face in mm, averaged; landmark NME. The test evaluation
(faceparse.stages.recon3d_eval) scores clean, occluded, and de-occluded inputs. Primary metric:
``p90_mm_clean``, lower is better.
"""
