"""The math: VGG19 layers and features, one module per loss statistic, the optimisers, colour
and the coarse-to-fine schedule. Knows nothing of files, folders or terminals."""
