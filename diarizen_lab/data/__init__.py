"""Data: directories of ``wav.scp`` + ``rttm`` + ``uem``, training chunks, corpora.

Modules (imported directly, so that light tools do not pull in torch):

* :mod:`~diarizen_lab.data.wav_scp`, :mod:`~diarizen_lab.data.rttm`, :mod:`~diarizen_lab.data.uem` -- file formats
  (read line by line with :mod:`~diarizen_lab.data.text_lines`);
* :mod:`~diarizen_lab.data.datadir` -- :class:`DataDir`, a loaded and cross-checked data directory;
* :mod:`~diarizen_lab.data.check` -- validation and statistics (``diarizen-lab data check``);
* :mod:`~diarizen_lab.data.task` -- :class:`Task`, the ``[task]`` section: sample rate, chunk size, speakers;
* :mod:`~diarizen_lab.data.frames` -- :class:`FrameGeometry`, where a model's output frames lie;
* :mod:`~diarizen_lab.data.dataset` -- :class:`ChunkDataset` and ``collate`` for training;
* :mod:`~diarizen_lab.data.random_chunks` -- :class:`RandomChunks`, noise chunks without files (tests, benchmarks);
* :mod:`~diarizen_lab.data.targets` -- chunk labels to permutation-invariant powerset targets;
* :mod:`~diarizen_lab.data.synth` -- the built-in synthetic corpus (``diarizen-lab data synth``);
* :mod:`~diarizen_lab.data.corpora` -- AMI, AISHELL-4 and AliMeeting preparation.
"""
