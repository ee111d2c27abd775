"""Neural network models: the WavLM encoder, Conformer back-ends and the segmentation models built from them."""
