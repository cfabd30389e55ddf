"""ViTs as dynamic-convolution ConvNets (Zhou, Loy, Dai; arXiv 2309.10713)."""
