"""Your own slow models (README "Your own model"): `model.kind: custom` with
`model.factory: "custom_models.<module>:<function>"`. This folder is a DVC dependency of the
pretrain and stream stages, and its code is part of every unit's fingerprint when a custom
model is used, so editing it retrains what depends on it."""
