"""Benchmarks for finetuner (issue #9): training throughput, accuracy vs examples per class, prediction latency,
training memory. Run ``python -m bench --help``."""
