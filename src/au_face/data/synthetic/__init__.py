"""Synthetic 4D AU data from the ICT face model: AU tracks, meshes, noisy coarse input, rendered frames.

Each sequence is one random identity making facial actions while the head moves slightly:

* **Identity**: ``N(0, identity_sigma)`` coefficients on the first ``identity_modes`` ICT PCA modes,
  plus a skin albedo. Identities are disjoint between the train/val/test splits.
* **AU activations** ``[T,K]`` in ``[0,1]``: events with a smooth onset ramp, an apex hold and a
  smooth offset ramp (smoothstep), peak intensity uniform in ``intensity_range``. Each AU fires
  spontaneously at its own rate (:data:`SPONTANEOUS_OCCUPANCY`); then :data:`CO_OCCURRENCE_RULES`
  add follower events (AU6 after AU12, much more likely for a strong AU12; AU2 with AU1; AU17 with
  AU15; AU24 with AU23; AU25 with AU26; AU10 with AU12 or AU14; AU7 with AU6 or AU4) and :data:`EXCLUSION_RULES`
  remove most AU4 events that overlap AU1/AU2.
* **Unlabelled activity** (scaled by ``nuisance_activity``, 0 disables): speech bouts (jaw and lip
  shapes oscillating at syllable rate) and blinks, on ICT shapes that no labelled AU uses
  (:data:`NUISANCE_SHAPES`). Real faces talk and blink between AUs; without this, a model learns to
  erase any motion that is not a labelled AU.
* **Clean mesh**: ``neutral + identity + B(activations) + unlabelled activity``, with ``B`` the ICT
  FACS mapping (:meth:`ICTFaceModel.au_basis`) and expression weights clipped to ``[0, 1]``. Stored
  canonical (head pose removed), in centimetres.
* **Occurrence labels**: ``activation >= label_threshold``; a fraction ``unknown_fraction`` of the
  entries is set to -1.
* **Head pose**: smooth yaw/pitch/roll (sums of two slow sinusoids, at most ``head_rotation_deg``)
  about the head origin, a small smooth drift of the face centre and a scale such that the 68
  landmarks span ``face_fill`` of the crop. Image space is ``x`` right, ``y`` down (pixels), ``z``
  away from the viewer: ``posed = scale * v @ R.T + t`` as in :class:`CoarseFrames`.
* **Coarse input** (what a per-frame regressor would output), the noise model:

  1. expression jitter: ``w_coarse = w_clean + N(0, expression_noise)`` i.i.d. per frame and per
     blendshape, over all ``E`` ICT blendshapes (not clipped);
  2. identity error: a constant per-sequence offset ``N(0, identity_noise)`` on the identity
     coefficients (it cancels in ``S - S̄`` but not in the error to the ground truth);
  3. vertex noise: i.i.d. ``N(0, vertex_noise)`` centimetres per vertex coordinate and frame.

* **Frames**: the posed *clean* mesh rendered (:mod:`au_face.data.synthetic.shading`) at ``image_size`` with a
  random Lambert + ambient light per sequence over a random gradient background, by the
  ``render_backend`` the config names (``embree`` by default; ``pytorch3d`` is an optional environment).
* **Sim-to-real** (``coarse_source="mediapipe"``, :mod:`au_face.data.synthetic.simreal`): instead of the noise
  model, the whole ICT face region is rendered with painted brows, lips, eyes and teeth in a random
  view (``view_range_deg``), scale and position, degraded like a camera image, and the real
  MediaPipe reconstructor runs on the frames. Its output is the coarse input (MediaPipe topology,
  its own pose removal and errors; frames without a detected face are invalid); the ground truth is
  the clean narrow-face mesh carried to MediaPipe's topology (:class:`TopologyMap`) and aligned to
  the MediaPipe template on the pose vertices. ``held_fraction`` of the sequences hold one
  expression throughout (so a neutral estimate cannot take a held smile for the identity).

On-disk layout under ``root`` (read by the synthetic datamodule)::

    coarse/<seq_id>.npz   CoarseFrames: noisy canonical vertices, pose, landmarks2d, crops, noisy expression
    labels/<seq_id>.csv   frame,AU01,AU02,...  (0-based frame, values 1/0/-1)
    gt/<seq_id>.npz       vertices, neutral, activations, expression (clean), identity coefficients, fingerprint
    synthetic.json        config, generator version, renderer, AUs, splits (written last)

Every sequence draws from its own ``np.random.Generator`` seeded by ``(seed, split, identity,
sequence)``, so any subset can be regenerated bit-identically. A sequence's ``gt`` file is deleted
before and written after its other two files and carries a fingerprint of the config, so a valid
``gt`` file certifies the whole sequence when an interrupted run is resumed.
"""
