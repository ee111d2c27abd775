"""Evaluation: scoring, RTTM output, checkpoint averaging and the diarization pipeline.

Modules (imported individually, so that scoring does not pay for pyannote.audio's import):

- :mod:`~diarizen_lab.evaluation.score`: DER with NIST md-eval-22 conventions (``score_files``, ``score``);
- :mod:`~diarizen_lab.evaluation.rttm`: ``write_rttm(path, annotation, uri)``;
- :mod:`~diarizen_lab.evaluation.average`: checkpoint selection from ``metrics.jsonl`` and weight averaging;
- :mod:`~diarizen_lab.evaluation.pipeline`: ``build_pipeline`` and ``diarize_file`` around pyannote.audio's
  ``SpeakerDiarization``; :mod:`~diarizen_lab.evaluation.embedding` and :mod:`~diarizen_lab.evaluation.audio`
  load its speaker-embedding model and input audio.
"""
