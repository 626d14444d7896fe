"""The ``fisn`` stage: Zhao & Qi's de-occlusion generator (FISN: SFT + SEAN on a Pix2PixHD backbone, a
two-scale PatchGAN; faceparse.stages.fisn.network, faceparse.losses_gan) trained on the one path — the same loop,
checkpoints, exact resume, DDP, MLflow, registry and serving as every other stage.

GAN on the stage contract: ``optimizers`` → {"G": Adam, "D": Adam} and ``schedulers`` → {"G", "D"} StepLR
(both checkpointed and restored by name); ``step_module`` is :class:`GanStep` (generator + discriminator in
one module, so DDP wraps both); ``train_step`` = one discriminator step (hinge on the real image vs the
generator's output made without gradient, both scales, conditioned on the target map) then one generator
step (eq. 9: w_gan·hinge + w_fm·feature matching + w_per·perceptual, plus two L1 terms that are not in the
paper: ``w_l1`` over the whole image and ``w_hole`` inside the occluded face region), returning the
generator's loss. Under DDP the discriminator step adds 0 × Σ(generator parameters) so every parameter DDP
tracks gets a gradient in every backward (DDP is built without ``find_unused_parameters``).

Choices the seed leaves open (reported with the code):

- Adam for both networks, betas (0.0, 0.9) — SPADE / SEAN's setting for the hinge loss with spectral-norm
  discriminators — at ``train.lr`` (SEAN: 2e-4; the 2-minute CPU demo: 1e-3, measured better there);
  StepLR per network from ``train.lr_step`` / ``lr_gamma``;
- data (``fisn.train.mode``, faceparse.stages.fisn.dataset): ``supervised`` (synthetic occluded photo →
  its clean render; source map = the visible label map, target map = the complete map) or ``paper``
  (self-reconstruction of the clean face with its complete map as both maps, as SEAN trains; the source map
  becomes M_α and the target M_γ only at inference); ``train.occluded_only`` keeps the occluded faces only
  (the unoccluded ones teach the identity, which the answer never uses: outside the occlusion mask it is
  the photo). Validation scores the task in both modes: PSNR inside the occluded face region of the
  occluded validation faces, against their clean renders;
- ``model.erase_occluded``: the generator's input with the maps' occlusion mask (a face class in the
  target map, none in the source map) set to mid-grey, an inpainting-style input (off by default: it
  measured no better);
- the answer (serving, `deocclude`, ``psnr_out``) is the photo with the generator's output pasted inside the
  occlusion mask; the generator's whole output is ``raw``;
- perceptual features (``fisn.loss.perceptual``): ``parser`` = the encoder of the parser inside the
  completion model this bundle carries (the registered parser version it composes), ``parser:REF`` another
  parser bundle / ``models:/`` URI, ``vgg19:PATH`` torchvision VGG-19 weights from a file (nothing is
  downloaded). Which one a run used is bundle meta ``perceptual`` and the MLflow param
  ``report.perceptual``.

Serving: **the FISN bundle carries the completion model** (``fisn.carry.completion``: a completion bundle,
default ``artifacts/completion/model``; its weights, meta and registry version are copied into this bundle
at training time, frozen and unused by training except as the default perceptual network). One registered
bundle is then the whole chain — landmarks → parser → Algorithm 1 → FISN — so `serve`, the canary,
`faceparse deocclude` and `evaluate --maps predicted` all run exactly the chain that was registered, with
the versions it composes recorded in it. ``fisn.carry.completion: null`` trains a bare generator (evaluation
with true maps only; `deocclude` then needs ``--completion``; it cannot be served).
"""
