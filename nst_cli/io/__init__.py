"""Files in and out: images, run folders and atomic writes, checkpoints, animations, plots."""
