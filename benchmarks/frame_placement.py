"""What upstream DiariZen's frame placement is worth in DER (docs/migrating-from-diarizen.md, "Frame placement").

Upstream's WavLM-Conformer centres frame ``i`` at sample ``79 + 320 i``; ours at the middle of its 400 samples,
sample ``200 + 320 i``, 7.5 ms later. A model trained upstream has learned labels at upstream's centres; our
pipeline reads its frames at ours. This script takes the best such a model can do: a perfect one, whose frame
``i`` is the reference at upstream's centre. It reads those frames back at upstream's centres and at ours and
scores both against the reference (collar 0, the reference's extent as UEM), so the difference is the cost of
the placement alone.

    python benchmarks/frame_placement.py ../shared/ami-setup/only_words/rttms/test
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pyannote.core import Annotation, Segment, Timeline
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate

RATE, STEP = 16000, 0.02
UPSTREAM_CENTRE, OUR_CENTRE = 79 / RATE, 200 / RATE


def frames_of(reference: Annotation, centre: float) -> dict[str, np.ndarray]:
    """Per speaker, whether it speaks at each frame's centre (frame ``i`` centred at ``centre + i * STEP``)."""
    times = centre + STEP * np.arange(int(reference.get_timeline().extent().end / STEP) + 1)
    frames = {}
    for label in reference.labels():
        active = np.zeros(len(times), dtype=bool)
        for segment in reference.label_timeline(label):
            active |= (times >= segment.start) & (times < segment.end)
        frames[label] = active
    return frames


def annotation_of(frames: dict[str, np.ndarray], centre: float) -> Annotation:
    """Segments of the frames, each frame covering ``STEP`` around its centre."""
    annotation = Annotation()
    for label, active in frames.items():
        edges = np.flatnonzero(np.diff(np.r_[0, active.astype(int), 0]))
        for start, end in zip(edges[::2], edges[1::2]):
            annotation[Segment(centre + (start - 0.5) * STEP, centre + (end - 0.5) * STEP)] = label
    return annotation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rttm_dir", type=Path, help="a folder of reference RTTM files")
    args = parser.parse_args()
    upstream, ours = DiarizationErrorRate(collar=0.0), DiarizationErrorRate(collar=0.0)
    for path in sorted(args.rttm_dir.glob("*.rttm")):
        for reference in load_rttm(path).values():
            uem = Timeline([reference.get_timeline().extent()])
            frames = frames_of(reference, UPSTREAM_CENTRE)
            upstream(reference, annotation_of(frames, UPSTREAM_CENTRE), uem=uem)
            ours(reference, annotation_of(frames, OUR_CENTRE), uem=uem)
    print(f"DER, read at upstream's centres: {100 * abs(upstream):.3f} %")
    print(f"DER, read at our centres:        {100 * abs(ours):.3f} %")
    print(f"cost of our placement:           {100 * (abs(ours) - abs(upstream)):+.3f} points")


if __name__ == "__main__":
    main()
