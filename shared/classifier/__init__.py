"""The model: the base model's resolution and runtime, label-word scoring, adapters, and language identification.
It knows neither the store nor the stream."""
