"""Shipped configs: domain registry, model presets, finetune/probe/run configs (see persona_diff.paths)."""
