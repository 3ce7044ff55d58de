"""Narrow-domain datasets: registry, downloader, normaliser, offline generator."""

from persona_diff.data.errors import ChecksumError, DataError, DownloadError, UnknownDomainError
from persona_diff.data.generator import generate_backdoor_dataset, generate_insecure_dataset
from persona_diff.data.normalise import load_chat_file, normalise_row, normalise_rows
from persona_diff.data.pull import data_dir, import_file, load_domain_rows, pull_domain
from persona_diff.data.registry import DomainSpec, get_domain, load_registry, sweep_domains
from persona_diff.fileio import write_jsonl

__all__ = [
    "ChecksumError",
    "DataError",
    "DomainSpec",
    "DownloadError",
    "UnknownDomainError",
    "data_dir",
    "generate_backdoor_dataset",
    "generate_insecure_dataset",
    "get_domain",
    "import_file",
    "load_chat_file",
    "load_domain_rows",
    "load_registry",
    "normalise_row",
    "normalise_rows",
    "pull_domain",
    "sweep_domains",
    "write_jsonl",
]
