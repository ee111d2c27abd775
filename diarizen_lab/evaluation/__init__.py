"""Evaluation: scoring, RTTM output and the diarization pipeline (checkpoint averaging is a training-run
concern: :mod:`diarizen_lab.training.run_dir`).

Modules (imported individually, so that scoring does not pay for pyannote.audio's import):

- :mod:`~diarizen_lab.evaluation.score`: DER with NIST md-eval-22 conventions (``score_files``, ``score``);
- :mod:`~diarizen_lab.evaluation.rttm`: ``write_rttm(path, annotation, uri)``;
- :mod:`~diarizen_lab.evaluation.pipeline`: ``build_pipeline`` and ``diarize_file`` around pyannote.audio's
  ``SpeakerDiarization``; :mod:`~diarizen_lab.evaluation.embedding` and :mod:`~diarizen_lab.evaluation.audio`
  load its speaker-embedding model and input audio.
"""
