"""The lab: data sets, models, vectorized training, metrics, result store, studies."""
