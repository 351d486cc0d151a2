"""The loss terms: content, one module per style statistic (Gram, Wasserstein, guided
regions), total variation, and the weighted total."""
